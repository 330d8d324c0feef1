"""Worker side: run tasks from a local queue, spawn, answer steals, report.

``Executor`` runs tasks and records what they return; it knows nothing of MPI
and is also what a single-rank run uses. ``WorkerLoop`` wraps it with the
message handling of a worker rank.
"""

from __future__ import annotations

import socket
import time
import traceback

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

    def _spawn(self, child_id, payload, priority):
        self.queue.push(Spawned(child_id, payload, priority))

    @property
    def mean_task_s(self) -> float:
        return self.stats.busy_s / self.stats.tasks if self.stats.tasks else 0.0

    def run_one(self) -> bool:
        """Run the front task. Return False if it raised (``self.error`` says why)."""
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
            return False
        finally:
            self.stats.busy_s += _now() - t0
            _context._set_current(None)
        self.stats.tasks += 1
        n_children = ctx._n_children
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
    """The message loop of one worker rank for one call."""

    # How often a busy worker looks at its mailbox: bounds how long a steal
    # request waits (plus the running task), and costs ~1 us per look.
    POLL_INTERVAL_S = 0.0005
    # How often a busy worker tells the master its queue length and progress.
    STATUS_INTERVAL_S = 0.05

    def __init__(self, comm, executor: Executor, policy, master: int = 0):
        self.comm = comm
        self.ex = executor
        self.policy = policy
        self.master = master
        self.seq_seen = 0
        self.requested = False  # a LOW/IDLE request is outstanding
        self.last_state = None
        self.acks: list = []
        self.aborted = False
        self.stopped = False
        self.stop_error = None
        self.pending: list = []  # isend requests not known complete
        self.last_status = _now()
        from mpi4py import MPI

        self._status = MPI.Status()

    # -- sending -------------------------------------------------------------------
    def _send(self, obj, dest, tag):
        self.pending.append(self.comm.isend(obj, dest=dest, tag=tag))
        self.ex.stats.messages_sent += 1
        if len(self.pending) > 64:
            self._reap()

    def _reap(self):
        from mpi4py import MPI

        if self.pending and MPI.Request.Testall(self.pending):
            self.pending.clear()

    def _report(self, state):
        ex = self.ex
        results = ex.take_results() if ex.mode == "map" else None
        error, ex.error = ex.error, None
        rep = Report(state, self.seq_seen, ex.done, ex.spawned, len(ex.queue), ex.mean_task_s,
                     results, tuple(self.acks), self.aborted, error)
        ex.done = ex.spawned = 0
        self.acks.clear()
        self._send(rep, self.master, Tag.REPORT)
        self.last_state = state
        self.last_status = _now()
        if state != State.BUSY:
            self.requested = True
            ex.stats.requests += 1

    # -- receiving -----------------------------------------------------------------
    def poll(self) -> bool:
        """Handle every message waiting; return True if any arrived."""
        comm, got, status = self.comm, False, self._status
        while True:
            msg = comm.improbe(status=status)
            if msg is None:
                return got
            got = True
            self._handle(status.tag, status.source, msg.recv())

    def _handle(self, tag, source, body):
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
            thief = body
            k = 0 if self.aborted else len(ex.queue) // 2
            entries = [e.packed() for e in ex.queue.take_back(k)] if k else []
            if entries:
                ex.stats.steals_given += 1
                ex.stats.tasks_given += k
            self._send((None, entries), thief, Tag.TASKS)
        elif tag == Tag.ABORT:
            self.aborted = True
            ex.queue.clear()
            ex.take_results()
            self.last_state = None
        elif tag == Tag.STOP:
            self.stopped = True
            self.stop_error = body
        else:
            raise RuntimeError(f"worker {ex.stats.rank}: unexpected message tag {tag} from {source}")

    # -- the loop ------------------------------------------------------------------
    def run(self) -> None:
        ex, policy = self.ex, self.policy
        backoff = Backoff()
        t_start = _now()
        while True:
            self.poll()
            if self.stopped:
                break
            if ex.queue and not self.aborted:
                backoff.reset()
                self._run_for(self.POLL_INTERVAL_S)
                continue
            # Nothing to run: say so once (again after each change), then wait.
            if self.last_state != State.IDLE or (self.acks and not self.requested):
                self._report(State.IDLE)
            t0 = _now()
            while not self.poll():
                backoff.sleep()
            ex.stats.idle_s += _now() - t0
        ex.stats.wall_s = _now() - t_start
        from mpi4py import MPI

        MPI.Request.Waitall(self.pending)
        self.pending.clear()

    def _run_for(self, seconds):
        ex, policy = self.ex, self.policy
        deadline = _now() + seconds
        low_water = policy.low_water_seconds
        while ex.queue:
            if not ex.run_one():
                # The master aborts the call; drop our work now.
                ex.queue.clear()
                self._report(State.IDLE)
                self.aborted = True
                return
            queued = len(ex.queue)
            if policy.balances and not self.requested and (queued == 0 or queued * ex.mean_task_s < low_water):
                self._report(State.LOW if queued else State.IDLE)
            now = _now()
            if now >= deadline:
                if now - self.last_status >= self.STATUS_INTERVAL_S:
                    self._report(State.BUSY)
                return
