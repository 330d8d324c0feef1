"""Runs the tasks of one call on one worker and keeps their results.

``Executor`` knows nothing of messages or threads: the worker driver calls
``run_one`` from its kernel thread and the ``WorkerProtocol`` reads and takes
what it recorded (results, counts, the combine tree). ``lock`` (a no-op by
default) is the driver's lock, taken around every change of the queue and the
results, so that the mailbox thread can answer steals and snapshots while a
kernel runs.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
import traceback

from collections.abc import Iterable
from typing import Any

from . import context as _context
from .arrays import is_out_of_memory, to_host
from ..observe.metrics import FOLD_EVERY, TaskTimes
from .combine import SKIPPED, CombineError, PartialTree
from .frames import Frame, LocalFold, root_frame
from .localqueue import Group, LocalQueue
from .tasks import RootRun, Spawned, short_repr

__all__ = ["Executor", "WorkerStats", "batch_form"]

_now = time.perf_counter


def _no_fold(frame, index, value) -> None:
    raise AssertionError("a map call folds no results")


def batch_form(kernel):
    """The batched form of ``kernel`` (a callable taking a list of payloads), or None."""
    fn = getattr(kernel, "batch", None)
    if callable(fn):
        return fn
    if isinstance(kernel, functools.partial):
        fn = getattr(kernel.func, "batch", None)
        if callable(fn):
            return functools.partial(fn, *kernel.args, **kernel.keywords)
    return None


class WorkerStats:
    __slots__ = ("rank", "tasks", "busy_s", "idle_s", "wall_s", "steals_given", "tasks_given",
                 "steals_received", "tasks_received", "requests", "messages_sent", "retries", "hung", "batches",
                 "comm_s", "bytes_in", "bytes_from")

    def __init__(self, rank):
        self.rank = rank
        self.tasks = 0
        self.busy_s = self.idle_s = self.wall_s = 0.0
        self.steals_given = self.tasks_given = 0
        self.steals_received = self.tasks_received = 0
        self.requests = self.messages_sent = 0
        self.retries = self.hung = self.batches = 0
        self.comm_s = 0.0  # mailbox time inside MPI calls
        self.bytes_in = 0
        self.bytes_from: dict = {}  # bytes received from each rank (its bytes out, counted here)

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__slots__}
        out["utilization"] = self.busy_s / self.wall_s if self.wall_s > 0 else 0.0
        return out


class Executor:
    """Runs tasks of one call on this rank and keeps their results.

    ``mode`` is "map" (keep every result, for shipping to the master) or
    "reduce" (fold results at once, keep nothing else).
    A kernel that raises is tried ``retries`` more times (sleeping
    ``retry_backoff_s``, doubling); after the last try, ``on_error="raise"``
    ends the call with a TaskError and ``"skip"`` records the failure and goes
    on (the task's result is None in ``map`` and leaves the reduction).

    Tasks are run depth-first from a ``LocalQueue``; a task is known by its
    parent's ``Frame`` and its index there, never by its id (built only when
    the task leaves: a steal, a snapshot, an error, a trace). Reductions fold
    through ``LocalFold``; ``map`` results are kept as runs of tasks consecutive
    in pre-order, each named by its first task's id.
    """

    # Batched kernels: used while tasks take less than BATCH_BELOW_S each, with
    # batches of about BATCH_TARGET_S of work (a GPU launch costs ~10 us, so a
    # 5 ms batch keeps launch overhead near 0.2%), at most BATCH_MAX tasks.
    BATCH_BELOW_S = 0.002
    BATCH_TARGET_S = 0.005
    BATCH_MAX = 4096
    # Runs of root tasks: while tasks are short, a worker takes up to BLOCK_MAX
    # consecutive root tasks (about BLOCK_TARGET_S of work, at most half its
    # queue) and runs them in one tight loop, taking the lock and recording
    # results once per block instead of once per task.
    BLOCK_BELOW_S = 0.0005
    BLOCK_TARGET_S = 0.002
    BLOCK_MAX = 1024

    def __init__(self, kernel, mode, decomposition, n_roots, op=None, rank=0, size=1, xp=None,
                 retries=0, on_error="raise", retry_backoff_s=0.05, device=None, tracing=False,
                 process_rank: int | None = None):
        self.kernel = kernel
        self.batch_fn = batch_form(kernel)
        # A kernel may say how many payloads fit a batch (device memory); the cap
        # is lowered further if the device runs out of memory anyway.
        self.batch_cap = int(getattr(kernel, "max_batch", None) or self.BATCH_MAX)
        self.mode = mode
        self.decomposition = decomposition
        self.root = root_frame()
        self.queue = LocalQueue(self.root)
        self.tree = PartialTree(op, n_roots) if mode == "reduce" else None  # op: skip_aware for "skip"
        self.fold = LocalFold(self.tree) if self.tree is not None else None
        self.segments: list = []  # map: [(first task's id, [values...]), ...], each a run in pre-order
        self._run: list | None = None  # the values of the run the next task extends (None: it starts one)
        self.failed: list = []  # [(task_id, traceback)] skipped since the last report
        self.done = 0
        self.spawned = 0
        self.stats = WorkerStats(rank)
        # Task durations in constant memory (a histogram; observe/metrics.py): appended to a small buffer that
        # is folded in every FOLD_EVERY tasks, so a call of 10**12 tasks costs a worker no more than one of 10.
        self.times = TaskTimes(tracing)
        self._tracing = tracing
        self._pending_durations = self.times.durations
        self._record_duration = self._pending_durations.append  # bound once (and after a fold): this runs per task
        self.on_device = device is not None
        self.error: dict | None = None
        self.retries = retries
        self.on_error = on_error
        self.retry_backoff_s = retry_backoff_s
        # ``rank``: this worker's id in the engine (its MPI rank, or 1..N in one process).
        self.ctx = _context.TaskContext(rank if process_rank is None else process_rank, size, None, xp=xp,
                                        device=device, worker=rank)
        # A worker rank's mailbox thread shares the queue and results (its driver sets its Condition);
        # alone, an uncontended Lock: C-level enter/exit, unlike contextlib.nullcontext's Python methods.
        self.lock = threading.Lock()
        self._children: list = []  # the payloads the running task spawned (and ctx._child_priorities)
        self.ctx._children = self._children
        # The task(s) running now (for snapshots, hand-backs): (frame, index, payload, priority) or a RootRun.
        self.current: list = []
        self.current_started = 0.0  # perf_counter start of its current attempt
        self.retired = False  # set by the mailbox when the running task overran its timeout
        self.halt = False  # set by the protocol (drain, abort, stop): run_slice returns before the next task

    @property
    def mean_task_s(self) -> float:
        return self.stats.busy_s / self.stats.tasks if self.stats.tasks else 0.0

    # -- running -----------------------------------------------------------------------
    def run_slice(self, until: float, poll=None) -> bool:
        """Run tasks until the queue is empty, ``until`` (perf_counter) passes, ``halt`` is set or
        ``poll()`` says stop (checked every few tasks); False if the call must end (a failure).

        The per-task hot path. One task at a time is inlined here (no id is
        built, nothing allocated but the frame of a task that spawned); short
        tasks with a batched form, and runs of short root tasks, go through
        ``run_one``'s batch and block paths."""
        try:
            return self._run_slice(until, poll)
        except CombineError as exc:  # the reduction op failed on two results: end the call with a TaskError
            self.error = exc.failure(self.ctx.rank)
            self.current.clear()
            self._drop_children()
            return False
        finally:
            _context._set_current(None)

    def _run_slice(self, until, poll) -> bool:
        queue, lock, stats, ctx, current = self.queue, self.lock, self.stats, self.ctx, self.current
        kernel, decomposition = self.kernel, self.decomposition
        priorities, stacks = queue._priorities, queue._stacks  # the same objects for the queue's life
        fold = self.fold
        reduce = fold is not None
        complete = fold.complete if fold is not None else _no_fold
        complete_run = fold.complete_run if fold is not None else _no_fold
        record_duration = self._record_duration
        children = self._children
        k = 0  # tasks popped in this slice
        check = 0  # k at which to look at the clock, poll, fold times and choose the path again
        grouped = False  # whether the batch or root-block path applies
        run_cap = 1  # tasks taken per pop: a run of siblings while tasks are short
        ran = False  # a pop's tasks ran and their results are not recorded yet
        # What ran: the first task's frame, index and priority; the run (a Group) when it was more than one
        # task; the leaves before the last task (``leaves``), and the last one's index, value, outcome.
        frame: Any = None
        run: Any = None
        j = last = priority = 0
        leaves: list = []
        value: Any = None
        ok = fresh = True
        t0 = t = 0.0
        _context._set_current(ctx)  # once per slice; run_slice clears it
        while True:
            if not ran and k >= check:
                if k and (_now() >= until or (poll is not None and poll())):
                    return True
                if len(self._pending_durations) >= FOLD_EVERY:
                    self._fold_times()
                    record_duration = self._record_duration
                # The batch path, or the block path while the top group is root tasks (a tree search's
                # tasks are spawned: looked at here, not per task; a stale answer only costs speed).
                top = queue.top()
                short = bool(stats.tasks) and stats.busy_s < stats.tasks * self.BLOCK_BELOW_S
                grouped = bool(stats.tasks) and stats.busy_s < stats.tasks * self.BATCH_BELOW_S and (
                    self.batch_fn is not None or (short and top is not None and top.is_roots and len(top) > 1))
                if grouped:
                    if not self._run_one():
                        return False
                    _context._set_current(ctx)  # the block and batch paths clear it
                    if not queue._count or self.halt or _now() >= until or (poll is not None and poll()):
                        return True  # a block or batch is many tasks: look at the time after each
                    k = check = 0  # look again before the next task
                    continue
                # Short tasks are popped in runs of siblings: one lock section per run, not per task (not
                # while tracing: a trace marks spawned tasks one by one).
                run_cap = 1 if not short or self._tracing else int(
                    min(self.BLOCK_MAX, self.BLOCK_TARGET_S * stats.tasks / max(stats.busy_s, 1e-9)))
                check = k + (64 if short else 16)  # the clock is read after every pop anyway
            # One lock section between two pops: what ran, then the next pop.
            with lock:
                if ran:
                    ran = False
                    current.clear()
                    if self.retired:  # handed to another worker meanwhile: its results would count twice
                        self._drop_children()
                        return True
                    if run is not None:  # a run: its leaves, then what did not run back on top
                        if leaves:
                            if reduce:
                                stats.tasks += len(leaves)
                                self.done += len(leaves)
                                complete_run(frame, j, leaves)
                            else:
                                self._record_run(frame, j, leaves, False, fresh)
                            leaves = []
                            fresh = False
                        if last + 1 < run.stop:  # below the last one's children
                            run.next = last + 1
                            queue.push_top(run)
                        run = None
                    if not ok:
                        if not self._finish_task(frame, last, ok, value, fresh):
                            return False
                    elif reduce and not children:
                        stats.tasks += 1
                        self.done += 1
                        slot = last + 1
                        if slot & 1 or slot != frame.filled or slot + 1 >= frame.n_slots or frame.split:
                            complete(frame, last, value)
                        else:  # LocalFold.complete's commonest case inline: an even slot, in order, not last
                            frame.acc.append(value)
                            frame.filled = slot + 1
                    elif reduce and not ctx._child_priorities:  # _record's spawner case inline
                        c = len(children)
                        stats.tasks += 1
                        self.done += 1
                        self.spawned += c
                        own = stacks.get(priority)
                        if own is None:
                            own = queue._stack(priority)
                        own.append(Group(Frame(frame, last, 1 + c, value), children, 0, 0, c, priority))
                        queue._count += c
                        self._children = ctx._children = []  # the group keeps the list
                    else:
                        self._record(frame, last, value, fresh)
                    if self.halt or t >= until:  # the clock read below: a slow task ends the slice
                        return True
                    if k >= check:
                        continue  # the checks above before the next pop
                if not queue._count:  # empty, or a steal took it meanwhile (the count: __bool__ is a call)
                    return True
                # LocalQueue.pop inlined: the top group's next task, or a run of its next ones
                priority = priorities[-1]
                stack = stacks[priority]
                g = stack[-1]
                j = g.next
                n = g.stop - j
                if n > run_cap:
                    n = run_cap
                if n > 1 and n > queue._count >> 1:
                    n = queue._count >> 1 or 1  # leave half the queue to thieves
                stop = j + n
                queue._count -= n
                fresh = g.fresh
                if fresh:
                    g.fresh = False
                frame, payloads, first = g.frame, g.payloads, g.first
                if stop == g.stop:
                    stack.pop()
                    if not stack:
                        queue._drop(priority)
                    if n > 1:  # the whole group is the run (it left the queue with its ``next`` as it was)
                        run = g
                        current.append(run)
                else:
                    g.next = stop
                    if n > 1:
                        run = Group(frame, payloads, first, j, stop, priority)
                        current.append(run)
                if n == 1:
                    payload = decomposition.payload(j) if payloads is None else payloads[j - first]
                    current.append((frame, j, payload, priority))
                k += n
            ctx._frame, ctx._task_id, ctx._priority = frame, None, priority
            children = self._children  # what the tasks spawn (a new list each time a group keeps the last)
            todo: Iterable
            if n == 1:
                todo = (payload,)
            elif payloads is not None:
                todo = payloads[j - first:stop - first]
            else:
                todo = map(decomposition.payload, range(j, stop))
            ok = True
            i = j
            t0 = t = self.current_started = _now()
            for payload in todo:  # the popped tasks back to back; stop after one that spawns or fails
                ctx._index = i
                i += 1
                try:
                    value = kernel(payload)
                except BaseException as exc:  # SystemExit in a kernel is the task's failure, not the job's exit
                    ok, value = False, exc
                    now = _now()
                    record_duration(now - t)
                    t = now
                    break
                now = _now()
                record_duration(now - t)
                t = now
                if children:
                    break
                leaves.append(value)
                ctx._task_id = None
            else:  # the run's last task returned without spawning: it is recorded below, not as a leaf
                value = leaves.pop()
            last = i - 1
            stats.busy_s += t - t0
            if self._tracing:  # one task a pop while tracing
                self.times.mark(t0, frame.child_path(last), t - t0)
            if not ok:  # retries (sleeping), the error's description: the slow path
                ok, value = (self._retry(frame, last, payload, priority, value) if self.retries
                             else (False, self._describe_failure(frame, last, payload, value)))
                _context._set_current(ctx)  # a retry clears it
            ran = True

    def run_one(self) -> bool:
        """Run the front task (or a batch or block of them); False if the call must end (a failure)."""
        try:
            return self._run_one()
        except CombineError as exc:  # the reduction op failed on two results: end the call with a TaskError
            self.error = exc.failure(self.ctx.rank)
            self.current.clear()
            self._drop_children()
            return False

    def _run_one(self) -> bool:
        """Run the front task (or a batch of them). False if one failed for good under on_error="raise".

        This is the per-task hot path (a no-op task costs a few microseconds
        here): no id is built, the running task is noted as a plain tuple.
        """
        if self.stats.tasks and self.mean_task_s < self.BATCH_BELOW_S:
            if self.batch_fn is not None:
                return self._run_batch()
            if self.mean_task_s < self.BLOCK_BELOW_S:
                top = self.queue.top()
                if top is not None and top.is_roots and len(top) > 1:
                    block = self._take_block()
                    if block is not None:
                        return self._run_block(*block)
        with self.lock:
            if not self.queue:  # a steal took it meanwhile
                return True
            g, j, payload, fresh = self.queue.pop()
            frame, priority = g.frame, g.priority
            if payload is None and g.payloads is None:
                payload = self.decomposition.payload(j)
            self.current.append((frame, j, payload, priority))
        ok, value = self._attempts(frame, j, payload, priority)
        with self.lock:
            self.current.clear()
            if self.retired:  # handed to another worker meanwhile: its result would count twice
                self._drop_children()
                return True
            return self._finish_task(frame, j, ok, value, fresh)

    def _finish_task(self, frame, j, ok, value, fresh) -> bool:
        """Record a task's outcome (caller holds the lock); False ends the call (on_error="raise")."""
        if not ok:
            if self.on_error != "skip":
                self.error = value
                return False
            self.failed.append((value["task_id"], value["remote_traceback"]))
            value = SKIPPED if self.tree is not None else None
        self._record(frame, j, value, fresh)
        return True

    def _record(self, frame, j, value, fresh) -> None:
        """Count the task, queue its children, keep or fold its result (caller holds the lock)."""
        stats = self.stats
        stats.tasks += 1
        self.done += 1
        children = self._children
        if self.tree is None:
            if self.on_device:
                value = to_host(value)  # map results travel to the master, which may have no GPU
            run = self._run
            if run is None or fresh or not self.queue.uniform:
                run = self._run = [value]
                self.segments.append((frame.child_path(j), run))
            else:
                run.append(value)
            if children:
                self._queue_children(Frame(frame, j, 1 + len(children), None), children)
            return
        if children:
            self._queue_children(Frame(frame, j, 1 + len(children), value), children)
        else:
            assert self.fold is not None
            self.fold.complete(frame, j, value)  # device arrays combine on the device

    def _queue_children(self, frame, children) -> None:
        ctx = self.ctx
        self.spawned += len(children)
        self.queue.push_children(frame, children, ctx._priority, ctx._child_priorities)
        self._children = ctx._children = []  # the queue keeps the list
        if ctx._child_priorities:
            ctx._child_priorities = {}

    def _drop_children(self) -> None:
        """Forget what the running task spawned (it failed, or was handed elsewhere)."""
        self._children.clear()
        self.ctx._child_priorities.clear()

    def _take_block(self):
        """Take a run of tasks from the top group (root tasks, or one task's children), noted as running;
        None if the top group is too short (or, tracing, spawned: a trace names spawned tasks one by one)."""
        k = int(min(self.BLOCK_MAX, self.BLOCK_TARGET_S / max(self.mean_task_s, 1e-9)))
        with self.lock:
            top = self.queue.top()
            k = min(k, len(self.queue) // 2)
            if top is None or k < 2 or len(top) < 2 or (self._tracing and not top.is_roots):
                return None
            g, start, stop, fresh = self.queue.take_top(k)
            block = Group(g.frame, g.payloads, g.first, start, stop, g.priority)
            self.current.append(block)
        return block, fresh

    def _run_block(self, block, fresh) -> bool:
        """Run consecutive tasks of one group in one loop; stop early at a task that spawns or fails."""
        kernel, ctx, payloads, first = self.kernel, self.ctx, block.payloads, block.first
        decomposition, frame = self.decomposition, block.frame
        add_duration, tracing = self._record_duration, self._tracing
        values: list = []
        append = values.append
        failure = None
        spawner = False
        children = self._children
        ctx._priority = block.priority
        ctx._frame = frame
        _context._set_current(ctx)
        t = t_start = self.current_started = _now()
        for i in range(block.next, block.stop):
            ctx._index, ctx._task_id = i, None
            payload = payloads[i - first] if payloads is not None else decomposition.payload(i)
            try:
                value = kernel(payload)
            except BaseException as exc:  # SystemExit in a kernel is the task's failure, not the job's exit
                failure = (i, payload, exc)
                add_duration(_now() - t)
                break
            now = _now()
            add_duration(now - t)
            t = now
            append(value)
            if children:  # its children must join the queue before anything else runs
                spawner = True
                break
        _context._set_current(None)
        self.stats.busy_s += _now() - t_start
        if tracing:  # tasks ran back to back from t_start (root tasks only: see _take_block)
            self.times.block(t_start, block.next, len(values) + (failure is not None))
        if len(self._pending_durations) >= FOLD_EVERY:  # after block(), which reads this block's durations
            self._fold_times()
        outcome = True
        if failure is not None:  # retries as for any task, then record it or end the call
            i, payload, error = failure
            ok, value = (self._retry(frame, i, payload, block.priority, error) if self.retries
                         else (False, self._describe_failure(frame, i, payload, error)))
        with self.lock:
            self.current.clear()
            if self.retired:
                self._drop_children()
                return True
            rest = block.next + len(values) + (failure is not None)
            if rest < block.stop:  # not run: back on top, below the spawner's children
                self.queue.push_top(Group(frame, payloads, first, rest, block.stop, block.priority))
            self._record_run(frame, block.next, values, spawner, fresh)
            if failure is not None:
                outcome = self._finish_task(frame, failure[0], ok, value, fresh and not values)
                if not outcome:
                    self.queue.clear()
        return outcome

    def _record_run(self, frame, start, values, spawner, fresh) -> None:
        """Record consecutive tasks' results (caller holds the lock); the last one may have spawned."""
        n = len(values)
        if not n:
            return
        if spawner:
            children, self._children = self._children, []
            self._record_run(frame, start, values[:-1], False, fresh)
            self._children = self.ctx._children = children
            self._record(frame, start + n - 1, values[-1], fresh and n == 1)
            return
        self.stats.tasks += n
        self.done += n
        if self.fold is not None:
            complete = self.fold.complete
            for k, value in enumerate(values):
                complete(frame, start + k, value)
            return
        if self.on_device:
            values = [to_host(v) for v in values]
        run = self._run
        if run is None or fresh or not self.queue.uniform:
            self._run = values
            self.segments.append((frame.child_path(start), values))
        else:
            run.extend(values)

    def _pop_current(self):
        """Pop the front task and note it as running (caller holds the lock)."""
        g, j, payload, fresh = self.queue.pop()
        if payload is None and g.payloads is None:
            payload = self.decomposition.payload(j)
        self.current.append((g.frame, j, payload, g.priority))
        return g.frame, j, payload, g.priority, fresh

    def _run_batch(self) -> bool:
        """Run several front tasks in one call of the kernel's batched form."""
        k = int(min(self.batch_cap, max(1, self.BATCH_TARGET_S / max(self.mean_task_s, 1e-9))))
        with self.lock:
            # At most half the queue, so that a thief still finds something to take.
            k = min(k, max(1, len(self.queue) // 2))
            if not self.queue:
                return True
            tasks = [self._pop_current() for _ in range(k)]
            self.current_started = _now()
        return self._run_tasks_batched(tasks)

    def _run_tasks_batched(self, tasks) -> bool:
        """One batched call; on device out-of-memory, halve the batch (and later ones).

        Any other failure runs the tasks one at a time, so retries, skipping and
        the error name the task itself; results are the same either way.
        """
        ctx = self.ctx
        ctx._frame, ctx._index, ctx._task_id, ctx._priority = tasks[0][0], tasks[0][1], None, tasks[0][3]
        ctx._in_batch = True
        _context._set_current(ctx)
        t0 = _now()
        failure = None
        try:
            values = list(self.batch_fn([t[2] for t in tasks]))
            if len(values) != len(tasks):
                raise RuntimeError(f"batched kernel returned {len(values)} results for {len(tasks)} tasks")
        except BaseException as exc:  # noqa: B036  (as for one task: a task failure)
            failure = exc
        finally:
            dt = _now() - t0
            self.stats.busy_s += dt
            self.times.add_batch(t0, dt, [t[0].child_path(t[1]) for t in tasks])
            ctx._in_batch = False
            _context._set_current(None)
        if failure is not None:
            if is_out_of_memory(failure) and len(tasks) > 1:
                half = len(tasks) // 2
                self.batch_cap = max(1, half)
                return self._run_tasks_batched(tasks[:half]) and self._run_tasks_batched(tasks[half:])
            return self._run_one_by_one(tasks)
        self.stats.batches += 1
        with self.lock:
            if self.retired:
                return True
            for (frame, j, _, _, fresh), value in zip(tasks, values):
                self.current.pop(0)
                self._record(frame, j, value, fresh)
        return True

    def _run_one_by_one(self, tasks) -> bool:
        for frame, j, payload, priority, fresh in tasks:
            ok, value = self._attempts(frame, j, payload, priority)
            with self.lock:
                if self.retired:
                    continue
                self.current.pop(0)  # recorded below: no longer pending in a snapshot
                if not self._finish_task(frame, j, ok, value, fresh):
                    self.current = []
                    return False
        return True

    def _attempts(self, frame, j, payload, priority):
        """Run one task, with its retries: ``(True, value)`` or ``(False, error dict)``."""
        ctx = self.ctx
        ctx._frame, ctx._index, ctx._task_id, ctx._priority = frame, j, None, priority
        _context._set_current(ctx)
        t0 = self.current_started = _now()
        try:
            return True, self.kernel(payload)
        except BaseException as exc:  # SystemExit in a kernel is the task's failure, not the job's exit
            if not self.retries:
                return False, self._describe_failure(frame, j, payload, exc)
            return self._retry(frame, j, payload, priority, exc)
        finally:
            self._timed(t0, frame, j)
            if len(self._pending_durations) >= FOLD_EVERY:
                self._fold_times()
            _context._set_current(None)

    def _retry(self, frame, j, payload, priority, exc):
        ctx, error = self.ctx, self._describe_failure(frame, j, payload, exc)
        for attempt in range(1, self.retries + 1):
            self.stats.retries += 1
            time.sleep(self.retry_backoff_s * 2 ** (attempt - 1))
            ctx._frame, ctx._index, ctx._task_id, ctx._priority = frame, j, None, priority
            _context._set_current(ctx)
            t0 = self.current_started = _now()
            try:
                return True, self.kernel(payload)
            except BaseException as again:  # as above
                error = self._describe_failure(frame, j, payload, again)
            finally:
                self._timed(t0, frame, j)
                _context._set_current(None)
        return False, error

    def _timed(self, t0, frame, j) -> None:
        """Count a try of task ``j`` of ``frame`` that started at ``t0`` (the one-task path's
        bookkeeping; the hot loop in ``_run_slice`` does the same inline). It never folds the
        durations: ``_retry`` runs inside that loop, which holds the pending list's ``append``."""
        dt = _now() - t0
        self.stats.busy_s += dt
        self._record_duration(dt)
        if self._tracing:
            self.times.mark(t0, frame.child_path(j), dt)

    def _describe_failure(self, frame, j, payload, exc) -> dict:
        self._drop_children()  # a failed try leaves no children
        return {
            "task_id": frame.child_path(j),
            "payload_repr": short_repr(payload),
            "rank": self.ctx.rank,
            "host": socket.gethostname(),
            "remote_traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            "exc_type": type(exc).__name__,
        }

    # -- what the protocol takes -----------------------------------------------------------
    def take_results(self):
        """Hand over the map results gathered so far (and forget them)."""
        out, self.segments = self.segments, []
        self._run = None  # the next task starts a new run (its id is built then)
        return out

    def take_failed(self) -> tuple:
        out, self.failed = tuple(self.failed), []
        return out

    def give_tasks(self, k: int) -> list:
        """About k tasks from the back of the queue, for a thief (caller holds the lock)."""
        entries, cut = self.queue.take_back(k)
        if self.fold is not None:
            for frame in cut:  # their subtrees cannot complete here now: fold them by id
                self.fold.split(frame)
        return entries

    def take_tree_part(self):
        """Hand over the completed blocks (and the known lengths) of the combine tree, with the partial
        folds of every task still open here (snapshots, hand-backs)."""
        if self.tree is None:
            return None
        self._split_open_frames()
        blocks, self.tree.blocks = self.tree.blocks, {}
        return self.tree.shippable_lengths(), {k: to_host(v) for k, v in blocks.items()}

    def _split_open_frames(self) -> None:
        assert self.fold is not None
        frames = self.queue.frames() + [item.frame if isinstance(item, Group) else item[0] for item in self.current]
        split = self.fold.split
        for frame in frames:
            split(frame)

    def pending_entries(self) -> list:
        """Tasks not run yet: the queue, and the task(s) running now (for snapshots, hand-backs)."""
        entries = self.queue.entries()
        for item in self.current:
            if isinstance(item, Group):  # a block being run (_run_block)
                entries.extend(item.wire(item.next, item.stop))
                continue
            frame, j, payload, priority = item
            if frame.offset == 0:
                entries.append(RootRun(j, j + 1, priority, None if self.decomposition is not None else [payload]))
            else:
                entries.append(Spawned(frame.child_path(j), payload, priority))
        return entries

    def _fold_times(self) -> None:
        """Fold the pending task durations into the histogram (every FOLD_EVERY tasks: constant memory)."""
        self.times.fold()
        self._pending_durations = self.times.durations
        self._record_duration = self._pending_durations.append

