"""``get_comm_workers()``: a communicator over the worker ranks, for tasks that call collectives."""

from __future__ import annotations

__all__ = ["get_comm_workers", "release_workers", "split_workers"]

_state: dict = {"comm": None}


def split_workers(comm):
    """Collective over ``comm``: the workers' communicator (every rank but 0); rank 0 gets COMM_NULL."""
    from mpi4py import MPI

    rank = comm.Get_rank()
    workers = comm.Split(MPI.UNDEFINED if rank == 0 and comm.Get_size() > 1 else 0, rank)
    if workers != MPI.COMM_NULL:
        _state["comm"] = workers
    return workers


def release_workers(workers) -> None:
    """The end of the pool: free the workers' communicator (if this rank has one); tasks no longer see it."""
    from mpi4py import MPI

    if _state["comm"] is workers:
        _state["comm"] = None
    if workers != MPI.COMM_NULL:
        workers.Free()


def get_comm_workers():
    """The intracommunicator of the worker ranks, inside a task (as mpi4py.futures gives it).

    A task that calls a collective on it waits for a task on every other
    worker to call it too. That is only safe when exactly one such task per
    worker runs, all at the same time: submit ``num_workers`` of them at once
    and nothing else meanwhile (mpi4py's ``run_cpi.py``). Otherwise a worker
    may hold two of them, or none, and the collective never completes.
    """
    comm = _state["comm"]
    if comm is None:
        raise RuntimeError("get_comm_workers() is only available in a task running on a worker rank "
                           "(python -m hpcmicro.futures, or an MPICommExecutor)")
    return comm
