"""The task context a kernel sees through ``hm.context()``."""

from __future__ import annotations

import threading
from typing import Any

from .arrays import array_module

__all__ = ["TaskContext", "context"]


class TaskContext:
    """What a running kernel may know and do.

    One object per worker, reused for every task (allocation per task would
    show up in the no-op throughput): the worker points it at the next task
    before each call.

    ``rank`` and ``size`` are the MPI rank and size of the process running the
    task; ``worker`` is the id of the worker running it, unique among the job's
    workers: its rank under MPI, 1..N for the workers of a one-rank run (which
    all run in rank 0). Per-worker output files are named by ``worker``.
    """

    __slots__ = ("rank", "size", "worker", "_xp", "device", "_callback", "_children", "_child_priorities",
                 "_priority", "_in_batch", "_frame", "_index", "_task_id")

    def __init__(self, rank: int, size: int, spawn=None, xp=None, device=None, worker: int | None = None):
        self.rank = rank
        self.size = size
        self.worker = rank if worker is None else worker
        self._xp = xp  # None: numpy, imported when a kernel first asks for ``xp``
        self.device = device
        # The running task: its parent's frame and its index there; its id is built only if asked for.
        self._frame: Any = None
        self._index = 0
        self._task_id: tuple | None = ()
        # ``spawn(child_id, payload, priority)``: a callback for contexts outside a worker (planning,
        # tests). A worker sets ``_children`` instead, the payloads it queues once the task returns, and
        # ``_child_priorities``, {index: priority} for the children whose priority is not the parent's.
        self._callback = spawn
        self._children: list = []
        self._child_priorities: dict = {}
        self._priority = 0
        self._in_batch = False

    @property
    def xp(self):
        """The array module of this worker: numpy, or cupy on a GPU rank."""
        return array_module(self._xp)

    @property
    def task_id(self) -> tuple:
        """The running task's id: ``(i,)`` for root task i, the parent's id plus the spawn index for a child.

        Built when first asked for (a worker never builds ids it does not need)."""
        tid = self._task_id
        if tid is None:
            tid = self._task_id = self._frame.child_path(self._index)
        return tid

    @task_id.setter
    def task_id(self, value: tuple) -> None:
        self._task_id = tuple(value)
        self._children = []
        self._child_priorities = {}

    def spawn(self, payload, priority: int | None = None) -> int:
        """Add a child task to the running call; return its index among this task's children.

        The child's id is the parent's id plus that index (``ctx.task_id +
        (index,)``), so ids order the whole tree the same way on every run.
        The child inherits the parent's priority unless one is given.
        """
        if self._in_batch:
            raise RuntimeError("a batched kernel cannot spawn tasks: give spawning kernels no .batch form")
        children = self._children
        index = len(children)
        children.append(payload)
        if priority is not None and priority != self._priority:
            self._child_priorities[index] = int(priority)
        if self._callback is not None:
            self._callback(self.task_id + (index,), payload, self._priority if priority is None else int(priority))
        return index

    def spawn_many(self, payloads, priority: int | None = None) -> None:
        """``spawn`` each payload in order (one call: cheaper for a task with many children)."""
        if self._in_batch:
            raise RuntimeError("a batched kernel cannot spawn tasks: give spawning kernels no .batch form")
        if self._callback is not None or (priority is not None and priority != self._priority):
            for payload in payloads:
                self.spawn(payload, priority)
            return
        self._children.extend(payloads)

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
