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
import time
import traceback
from contextlib import nullcontext

import numpy

from . import context as _context
from .arrays import is_out_of_memory, to_host
from ..observe.metrics import TaskTimes
from .combine import SKIPPED, CombineError, PartialTree
from .taskqueue import TaskQueue
from .tasks import RootRun, Spawned, short_repr

__all__ = ["Executor", "WorkerStats", "batch_form"]

_now = time.perf_counter


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
    "reduce" (fold results into a PartialTree at once, keep nothing else).
    A kernel that raises is tried ``retries`` more times (sleeping
    ``retry_backoff_s``, doubling); after the last try, ``on_error="raise"``
    ends the call with a TaskError and ``"skip"`` records the failure and goes
    on (the task's result is None in ``map`` and leaves the reduction).
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

    def __init__(self, kernel, mode, decomposition, n_roots, op=None, rank=0, size=1, xp=numpy,
                 retries=0, on_error="raise", retry_backoff_s=0.05, device=None, tracing=False,
                 process_rank: int | None = None):
        self.kernel = kernel
        self.batch_fn = batch_form(kernel)
        # A kernel may say how many payloads fit a batch (device memory); the cap
        # is lowered further if the device runs out of memory anyway.
        self.batch_cap = int(getattr(kernel, "max_batch", None) or self.BATCH_MAX)
        self.mode = mode
        self.decomposition = decomposition
        self.queue = TaskQueue()
        self.tree = PartialTree(op, n_roots) if mode == "reduce" else None  # op: skip_aware for "skip"
        self.root_segments: list = []  # [[start, [values...]], ...] for map
        self.spawned_results: list = []  # [(task_id, value), ...] for map
        self.failed: list = []  # [(task_id, traceback)] skipped since the last report
        self.done = 0
        self.spawned = 0
        self.stats = WorkerStats(rank)
        self.times = TaskTimes(tracing)
        self._tracing = tracing
        self._record_duration = self.times.durations.append  # bound once: this runs per task
        self.on_device = device is not None
        self.error: dict | None = None
        self.retries = retries
        self.on_error = on_error
        self.retry_backoff_s = retry_backoff_s
        # ``rank``: this worker's id in the engine (its MPI rank, or 1..N in one process).
        self.ctx = _context.TaskContext(rank if process_rank is None else process_rank, size, self._spawn, xp=xp,
                                        device=device, worker=rank)
        self.lock = nullcontext()  # a worker rank's mailbox thread shares the queue and results
        self._children: list = []
        self.current: list = []  # entries of the task(s) running now (for snapshots, hand-backs)
        self.current_started = 0.0  # perf_counter start of its current attempt
        self.retired = False  # set by the mailbox when the running task overran its timeout

    def _spawn(self, child_id, payload, priority):
        # Children join the queue only once their parent has returned: a task
        # that fails (and is retried, or skipped) leaves no children behind, and
        # a snapshot taken while it runs never holds children of a task it
        # counts as not yet run.
        self._children.append(Spawned(child_id, payload, priority))

    @property
    def mean_task_s(self) -> float:
        return self.stats.busy_s / self.stats.tasks if self.stats.tasks else 0.0

    def run_one(self) -> bool:
        """Run the front task (or a batch or block of them); False if the call must end (a failure)."""
        try:
            return self._run_one()
        except CombineError as exc:  # the reduction op failed on two results: end the call with a TaskError
            self.error = exc.failure(self.ctx.rank)
            self.current.clear()
            self._children = []
            return False

    def _run_one(self) -> bool:
        """Run the front task (or a batch of them). False if one failed for good under on_error="raise".

        This is the per-task hot path (a no-op task costs a few microseconds
        here): the running task is noted as a plain tuple, and turned into a
        queue entry only if a snapshot asks for it.
        """
        if self.stats.tasks and self.mean_task_s < self.BATCH_BELOW_S:
            if self.batch_fn is not None:
                return self._run_batch()
            if self.mean_task_s < self.BLOCK_BELOW_S:
                block = self._take_block()
                if block is not None:
                    return self._run_block(block)
        with self.lock:
            if not self.queue:  # a steal took it meanwhile
                return True
            task_id, payload, priority, run = self.queue.pop()
            self.current.append((task_id, payload, priority, run))
        if run is not None and run.payloads is None:
            payload = self.decomposition.payload(task_id[0])
        ok, value = self._attempts(task_id, payload, priority)
        with self.lock:
            self.current.clear()
            if self.retired:  # handed to another worker meanwhile: its result would count twice
                self._children = []
                return True
            return self._finish_task(task_id, ok, value)

    def _finish_task(self, task_id, ok, value) -> bool:
        """Record a task's outcome (caller holds the lock); False ends the call (on_error="raise")."""
        if not ok:
            if self.on_error != "skip":
                self.error = value
                return False
            self.failed.append((task_id, value["remote_traceback"]))
            value = SKIPPED if self.tree is not None else None
        self._record(task_id, value)
        return True

    def _take_block(self):
        """Take a run of root tasks from the front of the queue (noted as running), or None."""
        k = int(min(self.BLOCK_MAX, self.BLOCK_TARGET_S / max(self.mean_task_s, 1e-9)))
        with self.lock:
            front = self.queue.front()
            k = min(k, len(self.queue) // 2)
            if not isinstance(front, RootRun) or k < 2:
                return None
            block = self.queue.take_front(min(k, len(front)))[0]
            self.current.append(block)
        return block

    def _run_block(self, block) -> bool:
        """Run consecutive root tasks in one loop; stop early at a task that spawns or fails."""
        kernel, ctx, payloads, first = self.kernel, self.ctx, block.payloads, block.first
        decomposition = self.decomposition
        add_duration, tracing = self._record_duration, self._tracing
        values = []
        failure = spawner = None
        ctx._priority = block.priority
        _context._set_current(ctx)
        t = t_start = self.current_started = _now()
        for i in range(block.start, block.stop):
            task_id = (i,)
            ctx.task_id = task_id
            ctx._n_children = 0
            payload = payloads[i - first] if payloads is not None else decomposition.payload(i)
            try:
                value = kernel(payload)
            except BaseException as exc:  # SystemExit in a kernel is the task's failure, not the job's exit
                failure = (task_id, payload, exc)
                add_duration(_now() - t)
                break
            now = _now()
            add_duration(now - t)
            t = now
            values.append(value)
            if self._children:  # its children must join the queue before anything else runs
                spawner = i
                break
        _context._set_current(None)
        self.stats.busy_s += _now() - t_start
        if tracing:  # tasks ran back to back from t_start
            self.times.block(t_start, block.start, len(values) + (failure is not None))
        outcome = True
        if failure is not None:  # retries as for any task, then record it or end the call
            task_id, payload, error = failure
            ok, value = (self._retry(task_id, payload, block.priority, error) if self.retries
                         else (False, self._describe_failure(task_id, payload, error)))
        with self.lock:
            self.current.clear()
            if self.retired:
                self._children = []
                return True
            self._record_run(block.start, values, spawner)
            rest = block.start + len(values)
            if failure is not None:
                outcome = self._finish_task(failure[0], ok, value)
                rest += 1
            if outcome and rest < block.stop:  # not run: back to the front of the queue
                self.queue.push(RootRun(rest, block.stop, block.priority, block.payloads, block.first))
        return outcome

    def _record_run(self, start, values, spawner) -> None:
        """Record consecutive root tasks' results (caller holds the lock)."""
        n = len(values)
        if not n:
            return
        if spawner is not None:  # only the last one spawned
            children, self._children = self._children, []
            self._record_run(start, values[:-1], None)
            self._children = children
            self._record((spawner,), values[-1])
            return
        self.stats.tasks += n
        self.done += n
        if self.tree is not None:
            add = self.tree.add_task
            for k, value in enumerate(values):
                add((start + k,), value, 0)
            return
        if self.on_device:
            values = [to_host(v) for v in values]
        segs = self.root_segments
        if segs and segs[-1][0] + len(segs[-1][1]) == start:
            segs[-1][1].extend(values)
        else:
            segs.append([start, values])

    def _pop_current(self):
        """Pop the front task and note it as running (caller holds the lock)."""
        task_id, payload, priority, run = self.queue.pop()
        self.current.append((task_id, payload, priority, run))
        if run is not None and run.payloads is None:
            payload = self.decomposition.payload(task_id[0])
        return task_id, payload, priority

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
        ctx.task_id, ctx._n_children, ctx._priority = tasks[0][0], 0, tasks[0][2]
        ctx._in_batch = True
        _context._set_current(ctx)
        t0 = _now()
        failure = None
        try:
            values = list(self.batch_fn([payload for _, payload, _ in tasks]))
            if len(values) != len(tasks):
                raise RuntimeError(f"batched kernel returned {len(values)} results for {len(tasks)} tasks")
        except BaseException as exc:  # noqa: B036  (as for one task: a task failure)
            failure = exc
        finally:
            dt = _now() - t0
            self.stats.busy_s += dt
            self.times.add_batch(t0, dt, [task_id for task_id, _, _ in tasks])
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
            for (task_id, _, _), value in zip(tasks, values):
                self.current.pop(0)
                self._record(task_id, value)
        return True

    def _run_one_by_one(self, tasks) -> bool:
        for task_id, payload, priority in tasks:
            ok, value = self._attempts(task_id, payload, priority)
            with self.lock:
                if self.retired:
                    continue
                self.current.pop(0)  # recorded below: no longer pending in a snapshot
                if not self._finish_task(task_id, ok, value):
                    self.current = []
                    return False
        return True

    def _attempts(self, task_id, payload, priority):
        """Run one task, with its retries: ``(True, value)`` or ``(False, error dict)``."""
        ctx = self.ctx
        ctx.task_id = task_id
        ctx._priority = priority
        ctx._n_children = 0
        _context._set_current(ctx)
        t0 = self.current_started = _now()
        try:
            return True, self.kernel(payload)
        except BaseException as exc:  # SystemExit in a kernel is the task's failure, not the job's exit
            if not self.retries:
                return False, self._describe_failure(task_id, payload, exc)
            return self._retry(task_id, payload, priority, exc)
        finally:
            dt = _now() - t0
            self.stats.busy_s += dt
            self._add_time(t0, dt, task_id)
            _context._set_current(None)

    def _retry(self, task_id, payload, priority, exc):
        ctx, error = self.ctx, self._describe_failure(task_id, payload, exc)
        for attempt in range(1, self.retries + 1):
            self.stats.retries += 1
            time.sleep(self.retry_backoff_s * 2 ** (attempt - 1))
            ctx.task_id, ctx._priority, ctx._n_children = task_id, priority, 0
            _context._set_current(ctx)
            t0 = self.current_started = _now()
            try:
                return True, self.kernel(payload)
            except BaseException as again:  # as above
                error = self._describe_failure(task_id, payload, again)
            finally:
                dt = _now() - t0
                self.stats.busy_s += dt
                self._add_time(t0, dt, task_id)
                _context._set_current(None)
        return False, error

    def _describe_failure(self, task_id, payload, exc) -> dict:
        self._children = []  # a failed try leaves no children
        return {
            "task_id": task_id,
            "payload_repr": short_repr(payload),
            "rank": self.ctx.rank,
            "host": socket.gethostname(),
            "remote_traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            "exc_type": type(exc).__name__,
        }

    def _record(self, task_id, value) -> None:
        """Count the task, queue its children, keep its result (caller holds the lock)."""
        self.stats.tasks += 1
        n_children = len(self._children)
        if n_children:
            # Last child first: each then lands at the queue's front in O(1) (children sort before
            # everything else the queue holds), where first-child-first cost an insort each.
            self.queue.push_many(reversed(self._children))
            self._children = []
        self.done += 1
        self.spawned += n_children
        if self.tree is not None:
            self.tree.add_task(task_id, value, n_children)  # device arrays combine on the device
            return
        if self.on_device:
            value = to_host(value)  # map results travel to the master, which may have no GPU
        if len(task_id) == 1:
            segs, i = self.root_segments, task_id[0]
            if segs and segs[-1][0] + len(segs[-1][1]) == i:
                segs[-1][1].append(value)
            else:
                segs.append([i, [value]])
        else:
            self.spawned_results.append((task_id, value))

    def take_results(self):
        """Hand over the map results gathered so far (and forget them)."""
        out = (self.root_segments, self.spawned_results)
        self.root_segments, self.spawned_results = [], []
        return out

    def take_failed(self) -> tuple:
        out, self.failed = tuple(self.failed), []
        return out

    def take_tree_part(self):
        """Hand over the completed blocks (and the known lengths) of the combine tree."""
        if self.tree is None:
            return None
        blocks, self.tree.blocks = self.tree.blocks, {}
        return self.tree.shippable_lengths(), {k: to_host(v) for k, v in blocks.items()}

    def pending_entries(self) -> list:
        """Tasks not run yet: the queue, and the task(s) running now (for snapshots, hand-backs)."""
        entries = [e.packed() for e in self.queue.entries()]
        for item in self.current:
            if isinstance(item, RootRun):  # a block being run (_run_block)
                entries.append(item.packed())
                continue
            task_id, payload, priority, run = item
            if run is None:
                entries.append(Spawned(task_id, payload, priority))
            else:
                i = task_id[0]
                entries.append(RootRun(i, i + 1, priority, run.payloads, run.first).packed())
        return entries

    def _add_time(self, t0, dt, task_id) -> None:
        self._record_duration(dt)
        if self._tracing:
            self.times.mark(t0, task_id, dt)
