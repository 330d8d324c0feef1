"""Array backends: NumPy or CuPy, and which GPU a rank uses.

``device="auto"`` binds a worker to a GPU when CuPy imports and a device is
visible, else runs it on NumPy (and says so once); ``"cpu"`` always uses
NumPy; ``"gpu"`` requires a GPU and is an error without one, never a silent
CPU run. A GPU rank's device is its node-local rank (SLURM_LOCALID when Slurm
sets it, else the rank within ``MPI.COMM_TYPE_SHARED``) modulo the visible
devices; CUDA_VISIBLE_DEVICES is respected because CUDA numbers only the
visible devices.

CuPy is imported only here and only when asked for, so ``import hpcmicro`` and
CPU runs never touch it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy

from ..engine.arrays import is_device_array, is_out_of_memory, to_host  # noqa: F401  (re-exported)
from ..errors import InvalidCall

__all__ = ["Backend", "select_backend", "DEVICES", "to_host", "is_device_array", "gpu_aware_mpi"]

DEVICES = ("auto", "cpu", "gpu")
log = logging.getLogger("hpcmicro")


@dataclass
class Backend:
    xp: Any  # numpy or cupy
    device: int | None  # CUDA device id, None on the CPU
    name: str  # "numpy" or "cupy"
    reason: str = ""  # why a rank asked for "auto" ended up on the CPU

    @property
    def is_gpu(self) -> bool:
        return self.device is not None

    def describe(self) -> str:
        return f"cupy on GPU {self.device}" if self.is_gpu else f"numpy{f' ({self.reason})' if self.reason else ''}"


CPU = Backend(numpy, None, "numpy")


def _cupy_devices():
    """(cupy module, number of visible devices) or (None, reason)."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CUDA library that fails to load
        return None, f"CuPy not importable: {type(exc).__name__}: {exc}".split("\n")[0]
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return None, f"no usable CUDA device: {type(exc).__name__}: {exc}".split("\n")[0]
    if count == 0:
        return None, "no CUDA device visible"
    return cupy, count


def node_local_rank(comm) -> int:
    """This rank's index among the ranks on its node."""
    local = os.environ.get("SLURM_LOCALID")
    if local is not None and local.isdigit():
        return int(local)
    from mpi4py import MPI

    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.rank
    finally:
        node.Free()


def select_backend(device: str, comm, local_rank: int | None = None, memory_limit=None) -> Backend:
    """The backend of this rank (called on every worker rank)."""
    if device not in DEVICES:
        raise InvalidCall(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cpu":
        return CPU
    cupy, found = _cupy_devices()
    if cupy is None:
        if device == "gpu":
            raise InvalidCall(f"device='gpu' but this rank has no GPU: {found}")
        return Backend(numpy, None, "numpy", reason=found)
    count = found
    if local_rank is None:
        local_rank = node_local_rank(comm)
    dev = local_rank % count
    cupy.cuda.Device(dev).use()
    if memory_limit is not None:
        set_memory_limit(cupy, memory_limit)
    return Backend(cupy, dev, "cupy")


def set_memory_limit(cupy, limit) -> None:
    """Bound CuPy's memory pool: bytes, or a fraction (0, 1] of the device's memory."""
    pool = cupy.get_default_memory_pool()
    if isinstance(limit, float) and 0 < limit <= 1:
        pool.set_limit(fraction=limit)
    else:
        pool.set_limit(size=int(limit))


def gpu_aware_mpi() -> bool:
    """Whether the MPI library can send device buffers directly.

    Asks the library itself (Open MPI's MPIX_Query_cuda_support, MPICH's
    MPIX_GPU_query_support); HPCMICRO_GPU_AWARE_MPI=0/1 overrides. Without it,
    device arrays are staged through host memory (same values, same bits).
    """
    forced = os.environ.get("HPCMICRO_GPU_AWARE_MPI")
    if forced is not None:
        return forced.strip().lower() in ("1", "true", "yes")
    import ctypes

    try:
        lib = ctypes.CDLL(None)
    except OSError:
        return False
    query = getattr(lib, "MPIX_Query_cuda_support", None)
    if query is not None:
        try:
            return bool(query())
        except Exception:
            return False
    query = getattr(lib, "MPIX_GPU_query_support", None)
    if query is not None:
        flag = ctypes.c_int(0)
        try:
            MPIX_GPU_SUPPORT_CUDA = 0
            return query(MPIX_GPU_SUPPORT_CUDA, ctypes.byref(flag)) == 0 and bool(flag.value)
        except Exception:
            return False
    return False
