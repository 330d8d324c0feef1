"""Array backends: NumPy or CuPy, and which GPU a rank uses.

``device="auto"`` binds a worker to a GPU when CuPy imports and a device is
visible, else runs it on NumPy (and says so once); ``"cpu"`` always uses
NumPy; ``"gpu"`` requires a GPU and is an error without one, never a silent
CPU run. A GPU rank's device is its node-local rank modulo the visible
devices; CUDA_VISIBLE_DEVICES is respected because CUDA numbers only the
visible devices. The node-local rank is what the launcher says
(LOCAL_RANK_VARIABLES: Slurm, MPICH's and Intel MPI's Hydra, Open MPI, ...),
else the rank in the communicator.

Choosing a backend is local to each rank and never fails half-way:
``select_backend`` makes no collective call (the master does not call it, so a
collective there would leave the workers waiting for it) and turns every
failure (a CuPy error, a device that cannot be made current, a bad memory
limit) into an InvalidCall naming it. The Runtime gathers every rank's outcome
in one allgather and raises the same error, naming the failing ranks, on all
of them.

CuPy is imported only here and only when asked for, so ``import hpcmicro`` and
CPU runs never touch it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from ..engine.arrays import array_module, is_device_array, is_out_of_memory, to_host  # noqa: F401  (re-exported)
from ..errors import InvalidCall

__all__ = ["Backend", "select_backend", "DEVICES", "to_host", "is_device_array"]

DEVICES = ("auto", "cpu", "gpu")
log = logging.getLogger("hpcmicro")


@dataclass
class Backend:
    module: Any  # cupy, or None for numpy (imported when first asked for: see ``xp``)
    device: int | None  # CUDA device id, None on the CPU
    name: str  # "numpy" or "cupy"
    reason: str = ""  # why a rank asked for "auto" ended up on the CPU

    @property
    def xp(self):
        """The array module: numpy (imported on first use) or cupy."""
        return array_module(self.module)

    @property
    def is_gpu(self) -> bool:
        return self.device is not None

    def describe(self) -> str:
        return f"cupy on GPU {self.device}" if self.is_gpu else f"numpy{f' ({self.reason})' if self.reason else ''}"


CPU = Backend(None, None, "numpy")


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


# The node-local rank as launchers set it, before MPI starts: Slurm's srun, Hydra (MPICH, Intel MPI),
# Open MPI's mpirun/prterun, MVAPICH2, Cray PALS, Flux, LSF's jsrun. Slurm first: inside an allocation, srun
# is the launcher even when an MPI library's variables leak in from the batch script's environment.
LOCAL_RANK_VARIABLES = ("SLURM_LOCALID", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK",
                        "MV2_COMM_WORLD_LOCAL_RANK", "PALS_LOCAL_RANKID", "FLUX_TASK_LOCAL_ID",
                        "JSM_NAMESPACE_LOCAL_RANK")


def launcher_local_rank() -> int | None:
    """This process's index among the ranks on its node, as the launcher says (None if none does)."""
    for name in LOCAL_RANK_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return None


def node_local_rank(comm) -> int:
    """This rank's index among the ranks on its node.

    The launcher's word if it gives one; else the rank within
    ``MPI.COMM_TYPE_SHARED``, which is a collective call: every rank of
    ``comm`` must then call this. ``select_backend`` does not use it.
    """
    local = launcher_local_rank()
    if local is not None:
        return local
    from mpi4py import MPI

    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.rank
    finally:
        node.Free()


def node_of_ranks(comm) -> list[int]:
    """Every rank's node, named by the lowest rank on it (a collective: every rank of ``comm`` calls it).

    Nodes are what ``MPI.COMM_TYPE_SHARED`` groups: ranks that share memory.
    """
    from mpi4py import MPI

    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        lowest = node.allreduce(comm.rank, op=MPI.MIN)
    finally:
        node.Free()
    return comm.allgather(lowest)


def select_backend(device: str, comm, local_rank: int | None = None, memory_limit=None) -> Backend:
    """The backend of this rank (called on every task-running rank, the master of a multi-rank job not).

    Local to this rank: no collective call on ``comm``, so ranks that choose
    differently (or fail) never leave each other waiting. Every failure is an
    InvalidCall saying what failed, for the caller to gather from every rank.
    ``local_rank`` defaults to the launcher's node-local rank, else the rank
    in ``comm`` (the devices are then shared out as well as can be without
    knowing which ranks share a node).
    """
    if device not in DEVICES:
        raise InvalidCall(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cpu":
        return CPU
    cupy, found = _cupy_devices()
    if cupy is None:
        if device == "gpu":
            raise InvalidCall(f"device='gpu' but this rank has no GPU: {found}")
        return Backend(None, None, "numpy", reason=found)
    count = found
    if local_rank is None:
        local_rank = launcher_local_rank()
    if local_rank is None:
        local_rank = comm.rank if comm is not None else 0
    dev = local_rank % count
    try:
        cupy.cuda.Device(dev).use()
    except Exception as exc:  # e.g. a device in exclusive-process mode that another process holds
        why = _one_line(f"GPU {dev} of {count} visible cannot be used: {type(exc).__name__}: {exc}")
        if device == "gpu":
            raise InvalidCall(f"device='gpu' but this rank's {why}") from None
        return Backend(None, None, "numpy", reason=why)
    if memory_limit is not None:
        try:
            set_memory_limit(cupy, memory_limit)
        except Exception as exc:
            raise InvalidCall(_one_line(f"device_memory_limit={memory_limit!r} cannot be set on GPU {dev}: "
                                        f"{type(exc).__name__}: {exc}")) from None
    return Backend(cupy, dev, "cupy")


def _one_line(text: str) -> str:
    return text.split("\n")[0]


def set_memory_limit(cupy, limit) -> None:
    """Bound CuPy's memory pool: bytes, or a fraction (0, 1] of the device's memory."""
    pool = cupy.get_default_memory_pool()
    if isinstance(limit, float) and 0 < limit <= 1:
        pool.set_limit(fraction=limit)
    else:
        pool.set_limit(size=int(limit))
