"""Worker side: run tasks from a local queue, spawn, answer steals, report.

``Executor`` runs tasks and records what they return; it knows nothing of MPI
and is also what a single-rank run uses. ``WorkerLoop`` wraps it with the
message handling of a worker rank.
"""

from __future__ import annotations

import socket
import threading
import time
import traceback
from collections import deque
from contextlib import nullcontext

import numpy

from ..mpi import signals
from . import context as _context
from .events import Backoff, Report, State, Tag
from ..mpi.devices import is_out_of_memory, to_host
from ..kernels.batched import batch_form
from ..observe.metrics import TaskTimes
from .combine import SKIPPED, PartialTree
from .taskqueue import TaskQueue
from .tasks import RootRun, Spawned, short_repr

__all__ = ["Executor", "WorkerLoop", "WorkerStats"]

_now = time.perf_counter


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
                 retries=0, on_error="raise", retry_backoff_s=0.05, device=None, tracing=False):
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
        self.ctx = _context.TaskContext(rank, size, self._spawn, xp=xp, device=device)
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
        _context._current = ctx
        t = t_start = self.current_started = _now()
        for i in range(block.start, block.stop):
            task_id = (i,)
            ctx.task_id = task_id
            ctx._n_children = 0
            payload = payloads[i - first] if payloads is not None else decomposition.payload(i)
            try:
                value = kernel(payload)
            except Exception as exc:
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
        _context._current = None
        self.stats.busy_s += _now() - t_start
        if tracing:  # tasks ran back to back from t_start
            self.times.block(t_start, block.start, len(values) + (failure is not None))
        outcome = True
        if failure is not None:  # retries as for any task, then record it or end the call
            task_id, payload, exc = failure
            ok, value = (self._retry(task_id, payload, block.priority, exc) if self.retries
                         else (False, self._describe_failure(task_id, payload, exc)))
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
        except Exception as exc:
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
        _context._current = ctx
        t0 = self.current_started = _now()
        try:
            return True, self.kernel(payload)
        except Exception as exc:
            if not self.retries:
                return False, self._describe_failure(task_id, payload, exc)
            return self._retry(task_id, payload, priority, exc)
        finally:
            dt = _now() - t0
            self.stats.busy_s += dt
            self._add_time(t0, dt, task_id)
            _context._current = None

    def _retry(self, task_id, payload, priority, exc):
        ctx, error = self.ctx, self._describe_failure(task_id, payload, exc)
        for attempt in range(1, self.retries + 1):
            self.stats.retries += 1
            time.sleep(self.retry_backoff_s * 2 ** (attempt - 1))
            ctx.task_id, ctx._priority, ctx._n_children = task_id, priority, 0
            _context._current = ctx
            t0 = self.current_started = _now()
            try:
                return True, self.kernel(payload)
            except Exception as again:
                error = self._describe_failure(task_id, payload, again)
            finally:
                dt = _now() - t0
                self.stats.busy_s += dt
                self._add_time(t0, dt, task_id)
                _context._current = None
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
            self.queue.push_many(self._children)
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

    def run_all(self) -> bool:
        """Run until the queue is empty (single-rank calls). False on a kernel error."""
        while self.queue:
            if not self.run_one():
                return False
        return True

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


class WorkerLoop:
    """The message loop of one worker rank for one call.

    Two threads. The main thread runs kernels; a mailbox thread does all MPI
    traffic: it sends the reports the main thread queues, and answers steals,
    new tasks, snapshots, DRAIN, ABORT and STOP at once, even while a long
    kernel runs (a steal that waited for the victim's current task would leave
    the thief idle for that task's whole duration). Pure-Python kernels hold
    the GIL, but Python hands it over every few milliseconds, so messages are
    answered within that. ``cond`` guards the queue, the results and the flags
    both threads read.

    The mailbox thread also runs the end of the call (``finish``: the final
    collectives), so that a rank whose kernel hangs past ``task_timeout`` does
    not hold up the other ranks; its main thread rejoins when the kernel
    returns.
    """

    # How often a busy worker tells the master its queue length and progress.
    STATUS_INTERVAL_S = 0.05
    # The longest the mailbox thread sleeps between looks at its mailbox.
    MAILBOX_BACKOFF_S = 0.001

    def __init__(self, comm, executor: Executor, policy, master: int = 0, task_timeout: float | None = None):
        self.comm = comm
        self.ex = executor
        self.policy = policy
        self.master = master
        self.task_timeout = task_timeout
        self.cond = threading.Condition(threading.Lock())  # a plain lock: cheaper than the default RLock
        executor.lock = self.cond
        self.outbox: deque = deque()
        self.outbox_ready = threading.Event()
        self.seq_seen = 0
        self.requested = False  # a LOW/IDLE request is outstanding
        self.last_state = None
        self.acks: list = []
        self.aborted = False
        self.draining = False
        self.stopped = False
        self.stop = None
        self.signal_sent = False
        self.mailbox_error: BaseException | None = None
        self.outcome = None
        self.last_status = _now()

    # -- main thread -----------------------------------------------------------------
    def run(self, finish):
        """Run the call; ``finish(stop)`` runs on the mailbox thread after STOP. Returns its value."""
        t_start = _now()
        self._finish = finish
        mailbox = threading.Thread(target=self._mailbox, name="hpcmicro-mailbox", daemon=True)
        mailbox.start()
        self._work()
        self.ex.stats.wall_s = _now() - t_start
        mailbox.join()
        if self.mailbox_error is not None:
            raise self.mailbox_error  # as it is: the runtime recognizes a dead peer (ULFM) by it
        return self.outcome

    def _work(self) -> None:
        ex, cond = self.ex, self.cond
        while True:
            with cond:
                if self.stopped or self.mailbox_error is not None:
                    return
                if ex.retired:
                    cond.wait(0.05)  # all our work went to others; wait for the end of the call
                    continue
                if self.aborted:
                    ex.take_results()  # the call is aborted: these go nowhere
                wait_state = None
                if self.aborted or not ex.queue:
                    wait_state = State.IDLE
                elif self.draining:
                    wait_state = State.DRAINED
                if wait_state is not None:
                    # Nothing to run: say so once (again after each change), then wait.
                    if self.last_state != wait_state or (self.acks and not self.requested):
                        self._report(wait_state)
                    t0 = _now()
                    cond.wait(0.05)
                    ex.stats.idle_s += _now() - t0
                    continue
            self._run_batch()

    def _run_batch(self) -> None:
        """Run tasks until the queue empties or it is time to tell the master how we are."""
        ex, cond, policy = self.ex, self.cond, self.policy
        while True:
            ok = ex.run_one()
            with cond:
                if not ok:
                    ex.queue.clear()
                    self.aborted = True  # the master will ABORT everyone
                    self._report(State.IDLE)
                    return
                if self.aborted or self.stopped or self.draining or ex.retired:
                    return
                queued = len(ex.queue)
                if policy.balances and not self.requested and policy.wants_more(queued, ex.mean_task_s):
                    self._report(State.LOW if queued else State.IDLE)
                if queued == 0:
                    return
                if _now() - self.last_status >= self.STATUS_INTERVAL_S:
                    self._report(State.BUSY)

    # -- reports (either thread, holding cond) ---------------------------------------
    def _make_report(self, state, snapshot=None, handback=None, signal=0) -> Report:
        ex = self.ex
        results = ex.take_results() if ex.mode == "map" else None
        error, ex.error = ex.error, None
        rep = Report(state, self.seq_seen, ex.done, ex.spawned, len(ex.queue), ex.mean_task_s,
                     results, tuple(self.acks), self.aborted, error, ex.take_failed(), snapshot, handback, signal)
        ex.done = ex.spawned = 0
        self.acks.clear()
        return rep

    def _report(self, state, **extra) -> None:
        """Queue a report for the mailbox thread to send."""
        self.outbox.append((self._make_report(state, **extra), self.master, Tag.REPORT))
        self.outbox_ready.set()
        self.last_state = state
        self.last_status = _now()
        if state in (State.LOW, State.IDLE):
            self.requested = True
            self.ex.stats.requests += 1

    # -- mailbox thread --------------------------------------------------------------
    def _mailbox(self) -> None:
        from mpi4py import MPI

        comm, status, pending = self.comm, MPI.Status(), []
        backoff = Backoff(tmax=self.MAILBOX_BACKOFF_S)
        try:
            stats = self.ex.stats
            while True:
                t0 = _now()
                self._flush(pending)
                msg = comm.improbe(status=status)
                if msg is not None:
                    backoff.reset()
                    body = msg.recv()
                    stats.comm_s += _now() - t0
                    size, source = status.Get_count(MPI.BYTE), status.source
                    stats.bytes_in += size
                    stats.bytes_from[source] = stats.bytes_from.get(source, 0) + size
                    with self.cond:
                        self._handle(status.tag, status.source, body)
                        self.cond.notify()
                    if self.stopped:
                        break
                    continue
                stats.comm_s += _now() - t0
                self._watch()
                if len(pending) > 64 and MPI.Request.Testall(pending):
                    pending.clear()
                self.outbox_ready.wait(backoff.advance())
                self.outbox_ready.clear()
            self._flush(pending)
            MPI.Request.Waitall(pending)
            self.outcome = self._finish(self.stop)
        except BaseException as exc:  # surface it in the main thread instead of hanging
            self.mailbox_error = exc
        finally:
            with self.cond:
                self.stopped = True
                self.cond.notify()

    def _flush(self, pending) -> None:
        while self.outbox:
            obj, dest, tag = self.outbox.popleft()
            pending.append(self.comm.isend(obj, dest=dest, tag=tag))
            self.ex.stats.messages_sent += 1

    def _watch(self) -> None:
        """Things the mailbox notices on its own: a preemption signal, a hung kernel."""
        if not self.signal_sent and signals.requested():
            with self.cond:
                self.signal_sent = True
                self._report(State.BUSY, signal=signals.requested())
        ex = self.ex
        if self.task_timeout and ex.current and not ex.retired and not self.aborted:
            if _now() - ex.current_started > self.task_timeout:
                with self.cond:
                    if not ex.current or ex.retired:
                        return
                    # Hand everything back; the late result will be discarded.
                    ex.retired = True
                    ex.stats.hung += 1
                    entries = ex.pending_entries()
                    ex.queue.clear()
                    handback = (entries, ex.take_tree_part())
                    self._report(State.RETIRED, handback=handback)

    def _handle(self, tag, source, body) -> None:
        """Act on one message (mailbox thread, holding ``cond``)."""
        ex = self.ex
        if tag == Tag.TASKS:
            seq, entries = body
            if seq is not None:
                self.seq_seen = seq
            else:  # a steal answer from a peer
                self.acks.append(source)
                if entries:
                    ex.stats.steals_received += 1
                    ex.stats.tasks_received += sum(len(e) for e in entries)
            if not self.aborted:
                ex.queue.push_many(entries)
            self.requested = False
            self.last_state = None  # whatever we said before is stale
        elif tag == Tag.STEAL:
            k = 0 if (self.aborted or self.draining or ex.retired) else len(ex.queue) // 2
            entries = [e.packed() for e in ex.queue.take_back(k)] if k else []
            if entries:
                ex.stats.steals_given += 1
                ex.stats.tasks_given += k
            self.outbox.append(((None, entries), body, Tag.TASKS))
        elif tag == Tag.SNAPSHOT:
            snapshot = {"pending": ex.pending_entries(), "tree": ex.take_tree_part()}
            self._report(self.last_state if self.last_state is not None else State.BUSY, snapshot=snapshot)
        elif tag == Tag.DRAIN:
            self.draining = True
            self.last_state = None
        elif tag == Tag.ABORT:
            if not self.aborted:  # a worker whose kernel failed has aborted itself and said so
                self.aborted = True
                ex.queue.clear()
                self.last_state = None  # tell the master we dropped our work
        elif tag == Tag.STOP:
            self.stopped = True
            self.stop = body
        else:
            raise RuntimeError(f"worker {ex.stats.rank}: unexpected message tag {tag} from {source}")
