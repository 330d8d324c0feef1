"""The MPI thread level hpcmicro needs.

A worker's mailbox thread receives steal requests and cancellations while the
main thread runs kernels and sends results, so two threads call MPI (never at
the same time). MPI allows that only from ``MPI_THREAD_SERIALIZED`` up; below
it the library may corrupt its state or deadlock. mpi4py asks for
``MPI_THREAD_MULTIPLE`` by default, but ``mpi4py.rc.thread_level`` or an MPI
library built without thread support can give less.
"""

from __future__ import annotations

from ..errors import InvalidCall

__all__ = ["require_serialized"]


def require_serialized(MPI, comm) -> None:
    """Raise InvalidCall on every rank of ``comm`` unless each gives at least
    MPI_THREAD_SERIALIZED.

    The levels are gathered first (a collective, main thread only), so that
    even a rank that alone got too little makes every rank raise, and none is
    left waiting for it.
    """
    levels = comm.allgather(MPI.Query_thread())
    low = {r: level for r, level in enumerate(levels) if level < MPI.THREAD_SERIALIZED}
    if not low:
        return
    names = {MPI.THREAD_SINGLE: "MPI_THREAD_SINGLE", MPI.THREAD_FUNNELED: "MPI_THREAD_FUNNELED"}
    given = sorted({names.get(level, str(level)) for level in low.values()})
    raise InvalidCall(
        f"MPI gives thread level {' / '.join(given)} (ranks {sorted(low)}), but hpcmicro needs at least "
        f"MPI_THREAD_SERIALIZED because a worker's mailbox thread calls MPI while kernels run: "
        f"do not set mpi4py.rc.thread_level below 'serialized' before importing mpi4py.MPI, "
        f"and use an MPI library built with thread support"
    )
