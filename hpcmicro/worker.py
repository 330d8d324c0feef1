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

from . import taskcontext as _context
from .protocol import Backoff, Report, State, Tag
from .reduce import PartialTree
from .taskqueue import TaskQueue
from .tasks import Spawned, short_repr

__all__ = ["Executor", "WorkerLoop", "WorkerStats"]

_now = time.perf_counter


class WorkerStats:
    __slots__ = ("rank", "tasks", "busy_s", "idle_s", "wall_s", "steals_given", "tasks_given",
                 "steals_received", "tasks_received", "requests", "messages_sent")

    def __init__(self, rank):
        self.rank = rank
        self.tasks = 0
        self.busy_s = self.idle_s = self.wall_s = 0.0
        self.steals_given = self.tasks_given = 0
        self.steals_received = self.tasks_received = 0
        self.requests = self.messages_sent = 0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}


class Executor:
    """Runs tasks of one call on this rank and keeps their results.

    ``mode`` is "map" (keep every result, for shipping to the master) or
    "reduce" (fold results into a PartialTree at once, keep nothing else).
    """

    def __init__(self, kernel, mode, decomposition, n_roots, op=None, rank=0, size=1, xp=numpy):
        self.kernel = kernel
        self.mode = mode
        self.decomposition = decomposition
        self.queue = TaskQueue()
        self.tree = PartialTree(op, n_roots) if mode == "reduce" else None
        self.root_segments: list = []  # [[start, [values...]], ...] for map
        self.spawned_results: list = []  # [(task_id, value), ...] for map
        self.done = 0
        self.spawned = 0
        self.stats = WorkerStats(rank)
        self.error: dict | None = None
        self.ctx = _context.TaskContext(rank, size, self._spawn, xp=xp)
        self.lock = nullcontext()  # a worker rank's mailbox thread shares the queue
        self._children: list = []

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
        """Run the front task. Return False if it raised (``self.error`` says why)."""
        with self.lock:
            if not self.queue:  # a steal took it meanwhile
                return True
            task_id, payload, priority, run = self.queue.pop()
        if run is not None and run.payloads is None:
            payload = self.decomposition.payload(task_id[0])
        ctx = self.ctx
        ctx.task_id = task_id
        ctx._n_children = 0
        ctx._priority = priority
        _context._set_current(ctx)
        t0 = _now()
        try:
            value = self.kernel(payload)
        except Exception as exc:
            self.error = {
                "task_id": task_id,
                "payload_repr": short_repr(payload),
                "rank": ctx.rank,
                "host": socket.gethostname(),
                "remote_traceback": traceback.format_exc(),
                "exc_type": type(exc).__name__,
            }
            self._children = []
            return False
        finally:
            self.stats.busy_s += _now() - t0
            _context._set_current(None)
        self.stats.tasks += 1
        n_children = ctx._n_children
        if n_children:
            with self.lock:
                self.queue.push_many(self._children)
            self._children = []
        self.done += 1
        self.spawned += n_children
        if self.tree is not None:
            self.tree.add_task(task_id, value, n_children)
        elif len(task_id) == 1:
            segs, i = self.root_segments, task_id[0]
            if segs and segs[-1][0] + len(segs[-1][1]) == i:
                segs[-1][1].append(value)
            else:
                segs.append([i, [value]])
        else:
            self.spawned_results.append((task_id, value))
        return True

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


class WorkerLoop:
    """The message loop of one worker rank for one call.

    Two threads. The main thread runs kernels; a mailbox thread does all MPI
    traffic: it sends the reports the main thread queues, and answers steals,
    new tasks, ABORT and STOP at once, even while a long kernel runs (a steal
    that waited for the victim's current task would leave the thief idle for
    that task's whole duration). Pure-Python kernels hold the GIL, but Python
    hands it over every few milliseconds, so steals are answered within that.
    ``cond`` guards the queue and the flags both threads read.
    """

    # How often a busy worker tells the master its queue length and progress.
    STATUS_INTERVAL_S = 0.05
    # The longest the mailbox thread sleeps between looks at its mailbox.
    MAILBOX_BACKOFF_S = 0.001

    def __init__(self, comm, executor: Executor, policy, master: int = 0):
        self.comm = comm
        self.ex = executor
        self.policy = policy
        self.master = master
        self.cond = threading.Condition()
        executor.lock = self.cond
        self.outbox: deque = deque()
        self.outbox_ready = threading.Event()
        self.seq_seen = 0
        self.requested = False  # a LOW/IDLE request is outstanding
        self.last_state = None
        self.acks: list = []
        self.aborted = False
        self.stopped = False
        self.stop_error = None
        self.mailbox_error: BaseException | None = None
        self.last_status = _now()

    # -- main thread -----------------------------------------------------------------
    def run(self) -> None:
        ex = self.ex
        t_start = _now()
        mailbox = threading.Thread(target=self._mailbox, name="hpcmicro-mailbox", daemon=True)
        mailbox.start()
        try:
            self._work()
        finally:
            if self.mailbox_error is None and not self.stopped:
                # Only reached if the main thread failed: let the exception
                # propagate (the Runtime aborts the job).
                pass
            else:
                mailbox.join()
        if self.mailbox_error is not None:
            raise RuntimeError("hpcmicro worker mailbox thread failed") from self.mailbox_error
        ex.stats.wall_s = _now() - t_start

    def _work(self) -> None:
        ex, cond = self.ex, self.cond
        while True:
            with cond:
                if self.aborted and (ex.root_segments or ex.spawned_results):
                    ex.take_results()  # the call is aborted: these go nowhere
                if self.stopped or self.mailbox_error is not None:
                    return
                if not ex.queue or self.aborted:
                    # Nothing to run: say so once (again after each change), then wait.
                    if self.last_state != State.IDLE or (self.acks and not self.requested):
                        self._report(State.IDLE)
                    t0 = _now()
                    cond.wait(0.05)
                    ex.stats.idle_s += _now() - t0
                    continue
            self._run_batch()

    def _run_batch(self) -> None:
        """Run tasks until the queue empties or it is time to tell the master how we are."""
        ex, cond, policy = self.ex, self.cond, self.policy
        low_water = policy.low_water_seconds
        while True:
            ok = ex.run_one()
            with cond:
                if not ok:
                    ex.queue.clear()
                    self.aborted = True  # the master will ABORT everyone
                    self._report(State.IDLE)
                    return
                if self.aborted or self.stopped:
                    return
                queued = len(ex.queue)
                if policy.balances and not self.requested and (queued == 0 or queued * ex.mean_task_s < low_water):
                    self._report(State.LOW if queued else State.IDLE)
                if queued == 0:
                    return
                if _now() - self.last_status >= self.STATUS_INTERVAL_S:
                    self._report(State.BUSY)

    def _report(self, state) -> None:
        """Queue a report for the mailbox thread (caller holds ``cond``)."""
        ex = self.ex
        results = ex.take_results() if ex.mode == "map" else None
        error, ex.error = ex.error, None
        rep = Report(state, self.seq_seen, ex.done, ex.spawned, len(ex.queue), ex.mean_task_s,
                     results, tuple(self.acks), self.aborted, error)
        ex.done = ex.spawned = 0
        self.acks.clear()
        self.outbox.append((rep, self.master, Tag.REPORT))
        self.outbox_ready.set()
        self.last_state = state
        self.last_status = _now()
        if state != State.BUSY:
            self.requested = True
            ex.stats.requests += 1

    # -- mailbox thread --------------------------------------------------------------
    def _mailbox(self) -> None:
        from mpi4py import MPI

        comm, status, pending = self.comm, MPI.Status(), []
        backoff = Backoff(tmax=self.MAILBOX_BACKOFF_S)
        try:
            while True:
                while self.outbox:
                    obj, dest, tag = self.outbox.popleft()
                    pending.append(comm.isend(obj, dest=dest, tag=tag))
                    self.ex.stats.messages_sent += 1
                msg = comm.improbe(status=status)
                if msg is not None:
                    backoff.reset()
                    body = msg.recv()
                    with self.cond:
                        self._handle(status.tag, status.source, body)
                        self.cond.notify()
                    if self.stopped:
                        break
                    continue
                if len(pending) > 64 and MPI.Request.Testall(pending):
                    pending.clear()
                self.outbox_ready.wait(backoff.tval)
                self.outbox_ready.clear()
                backoff.tval = min(backoff.tmax, max(backoff.tmin, backoff.tval * 2.0))
            while self.outbox:  # nothing is queued after STOP, but never drop a message
                obj, dest, tag = self.outbox.popleft()
                pending.append(comm.isend(obj, dest=dest, tag=tag))
            MPI.Request.Waitall(pending)
        except BaseException as exc:  # surface it in the main thread instead of hanging
            self.mailbox_error = exc
            with self.cond:
                self.cond.notify()

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
            k = 0 if self.aborted else len(ex.queue) // 2
            entries = [e.packed() for e in ex.queue.take_back(k)] if k else []
            if entries:
                ex.stats.steals_given += 1
                ex.stats.tasks_given += k
            self.outbox.append(((None, entries), body, Tag.TASKS))
        elif tag == Tag.ABORT:
            if not self.aborted:  # a worker whose kernel failed has aborted itself and said so
                self.aborted = True
                ex.queue.clear()
                self.last_state = None  # tell the master we dropped our work
        elif tag == Tag.STOP:
            self.stopped = True
            self.stop_error = body
        else:
            raise RuntimeError(f"worker {ex.stats.rank}: unexpected message tag {tag} from {source}")
