"""Array helpers the engine needs, without importing CuPy."""

from __future__ import annotations

__all__ = ["is_device_array", "to_host", "is_out_of_memory"]


def is_device_array(x) -> bool:
    return hasattr(x, "__cuda_array_interface__")


def to_host(x):
    """A NumPy copy of a device array; anything else as it is."""
    if is_device_array(x):
        return x.get()
    return x


def is_out_of_memory(exc: BaseException) -> bool:
    """CuPy's out-of-memory error (or CUDA's), recognized without importing CuPy."""
    name = type(exc).__name__
    return name == "OutOfMemoryError" or ("CUDA" in name and "out of memory" in str(exc).lower())
