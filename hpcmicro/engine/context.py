"""The task context a kernel sees through ``hm.context()``."""

from __future__ import annotations

import threading

import numpy

__all__ = ["TaskContext", "context"]


class TaskContext:
    """What a running kernel may know and do.

    One object per worker, reused for every task (allocation per task would
    show up in the no-op throughput): the worker updates ``task_id`` before
    each call.

    ``rank`` and ``size`` are the MPI rank and size of the process running the
    task; ``worker`` is the id of the worker running it, unique among the job's
    workers: its rank under MPI, 1..N for the workers of a one-rank run (which
    all run in rank 0). Per-worker output files are named by ``worker``.
    """

    __slots__ = ("rank", "size", "worker", "task_id", "xp", "device", "_spawn", "_n_children", "_priority",
                 "_in_batch")

    def __init__(self, rank: int, size: int, spawn, xp=numpy, device=None, worker: int | None = None):
        self.rank = rank
        self.size = size
        self.worker = rank if worker is None else worker
        self.xp = xp
        self.device = device
        self.task_id: tuple = ()
        self._spawn = spawn  # worker callback: spawn(child_id, payload, priority)
        self._n_children = 0
        self._priority = 0
        self._in_batch = False

    def spawn(self, payload, priority: int | None = None) -> tuple:
        """Add a child task to the running call and return its id.

        The child's id is the parent's id plus its spawn index, so ids order
        the whole tree the same way on every run. The child inherits the
        parent's priority unless one is given.
        """
        if self._in_batch:
            raise RuntimeError("a batched kernel cannot spawn tasks: give spawning kernels no .batch form")
        child_id = self.task_id + (self._n_children,)
        self._n_children += 1
        self._spawn(child_id, payload, self._priority if priority is None else int(priority))
        return child_id

    def __repr__(self):
        return f"TaskContext(rank={self.rank}, worker={self.worker}, task_id={self.task_id})"


# Per thread: an in-process run has one kernel thread per worker.
_local = threading.local()


def context() -> TaskContext:
    """The context of the task running in this thread; only valid inside a kernel."""
    ctx = getattr(_local, "ctx", None)
    if ctx is None:
        raise RuntimeError("hm.context() is only available inside a kernel that hpcmicro is running")
    return ctx


def _set_current(ctx: TaskContext | None) -> None:
    _local.ctx = ctx
