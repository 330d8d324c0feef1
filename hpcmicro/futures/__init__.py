"""``hpcmicro.futures``: a drop-in for ``mpi4py.futures`` on hpcmicro's work-stealing engine.

    mpiexec -n 8 python -m hpcmicro.futures script.py     # rank 0 runs the script, the others serve

``from hpcmicro.futures import MPIPoolExecutor`` in place of mpi4py's: the
same names and semantics (docs/futures.md), with tasks balanced by stealing,
submissions batched automatically, and futures accepted as arguments
(dependencies). ``import hpcmicro.futures`` does not initialize MPI.
"""

import concurrent.futures as _cf
from concurrent.futures import (
    ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, BrokenExecutor, CancelledError, Executor, Future,
    InvalidStateError, TimeoutError, as_completed, wait,
)

from ._executor import DependencyError, MPICommExecutor, MPIPoolExecutor, TaskFuture
from ._pool import RemoteTraceback
from ._values import ValueLost
from ._workers import get_comm_workers

__all__ = [
    "MPIPoolExecutor", "MPICommExecutor", "as_completed", "wait", "get_comm_workers",
    "FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED",
    "Future", "TaskFuture", "DependencyError", "RemoteTraceback", "ValueLost", "BrokenExecutor", "CancelledError",
    "TimeoutError",
    # re-exported from concurrent.futures, as mpi4py.futures does
    "Executor", "InvalidStateError", "ThreadPoolExecutor", "ProcessPoolExecutor",
]


def __getattr__(name):
    # As concurrent.futures itself: the pool executors on first use (ProcessPoolExecutor imports
    # multiprocessing, 20 ms at every rank's start, which a script that never uses it should not pay).
    if name in ("ThreadPoolExecutor", "ProcessPoolExecutor"):
        return getattr(_cf, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
