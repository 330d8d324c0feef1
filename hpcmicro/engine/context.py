"""The task context a kernel sees through ``hm.context()``."""

from __future__ import annotations

import numpy

__all__ = ["TaskContext", "context"]


class TaskContext:
    """What a running kernel may know and do.

    One object per worker, reused for every task (allocation per task would
    show up in the no-op throughput): the worker updates ``task_id`` before
    each call.
    """

    __slots__ = ("rank", "size", "task_id", "xp", "device", "_spawn", "_n_children", "_priority", "_in_batch")

    def __init__(self, rank: int, size: int, spawn, xp=numpy, device=None):
        self.rank = rank
        self.size = size
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
        return f"TaskContext(rank={self.rank}, task_id={self.task_id})"


_current: TaskContext | None = None


def context() -> TaskContext:
    """The context of the task running on this rank; only valid inside a kernel."""
    if _current is None:
        raise RuntimeError("hm.context() is only available inside a kernel that hpcmicro is running")
    return _current


def _set_current(ctx: TaskContext | None) -> None:
    global _current
    _current = ctx
