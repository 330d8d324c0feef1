"""Array helpers the engine needs, without importing CuPy."""

from __future__ import annotations

__all__ = ["array_module", "is_device_array", "to_host", "is_out_of_memory"]


def array_module(module):
    """``module`` (cupy), or NumPy for None, imported only now: a job whose tasks never ask for an
    array module starts without loading it (50-100 ms a process)."""
    if module is None:
        import numpy

        return numpy
    return module


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
