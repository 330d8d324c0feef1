"""Master side: the pool, seeding, brokering steals, termination.

``Master`` is a state machine with no MPI in it: feed it ``handle(source,
tag, body)`` and it returns the messages to send as ``(dest, tag, body)``.
``run_master`` drives it over a communicator.

Termination. The master counts tasks created (roots, plus children reported)
and finished. A worker reports a finished task together with the children it
spawned, so while any task is unfinished, created > finished at the master;
equality means everything ran and was reported. The call ends when, in
addition, every worker is idle with nothing addressed to it in flight: its
last report says IDLE, it has seen every TASKS message the master sent it,
and no steal answer is on its way to it. Then no message is in flight, STOP
is safe, and no stray message can reach the next call.
"""

from __future__ import annotations

import time

from .protocol import Backoff, State, Tag
from .taskqueue import TaskQueue

__all__ = ["Master", "run_master"]


class WorkerView:
    """What the master knows of one worker."""

    __slots__ = ("rank", "capacity", "state", "sent_seq", "seq_seen", "queued", "mean_task_s",
                 "awaiting_from", "aborted", "done")

    def __init__(self, rank, capacity):
        self.rank = rank
        self.capacity = capacity
        self.state = State.BUSY
        self.sent_seq = 0
        self.seq_seen = 0
        self.queued = 0
        self.mean_task_s = 0.0
        self.awaiting_from = None  # victim rank whose steal answer is on its way here
        self.aborted = False
        self.done = 0

    @property
    def idle(self) -> bool:
        return self.state == State.IDLE and self.seq_seen == self.sent_seq and self.awaiting_from is None

    @property
    def queued_work(self) -> float:
        return self.queued * max(self.mean_task_s, 1e-9)


class Master:
    def __init__(self, runs, policy, worker_ranks, capacities, mode):
        self.policy = policy
        self.mode = mode
        self.workers = {r: WorkerView(r, c) for r, c in zip(worker_ranks, capacities)}
        self.total_capacity = float(sum(capacities))
        if policy.balances:
            self.pool = TaskQueue(runs)
        else:  # static: contiguous id ranges, whatever the priorities
            self.pool = TaskQueue()
            self._static_runs = sorted(runs, key=lambda r: r.start)
        self.created = sum(len(r) for r in runs)
        self.finished = 0
        self.error: dict | None = None
        self.aborting = False
        self.done = False
        self.root_segments: list = []
        self.spawned_results: list = []
        self.messages = 0
        self.steals_brokered = 0

    # -- start -----------------------------------------------------------------------
    def start(self) -> list:
        views = list(self.workers.values())
        counts = self.policy.seed_counts(self.created, [w.capacity for w in views])
        out = []
        if self.policy.balances:
            for w, k in zip(views, counts):
                if k:
                    out.append(self._give(w, self.pool.take_front(k)))
        else:
            source = TaskQueue()
            source._entries = list(reversed(self._static_runs))  # id order, front last
            source._count = self.created
            for w, k in zip(views, counts):
                if k:
                    out.append(self._give(w, source.take_front(k)))
        return out

    def _give(self, w, entries):
        w.sent_seq += 1
        w.state = State.BUSY
        return (w.rank, Tag.TASKS, (w.sent_seq, [e.packed() for e in entries]))

    # -- messages --------------------------------------------------------------------
    def handle(self, source, tag, rep) -> list:
        if tag != Tag.REPORT:
            raise RuntimeError(f"master: unexpected message tag {tag} from rank {source}")
        self.messages += 1
        w = self.workers[source]
        w.state = rep.state
        w.seq_seen = rep.seq_seen
        w.queued = rep.queued
        if rep.mean_task_s:
            w.mean_task_s = rep.mean_task_s
        w.aborted = rep.aborted
        w.done += rep.done
        self.finished += rep.done
        self.created += rep.spawned
        for victim in rep.acks:
            if w.awaiting_from == victim:
                w.awaiting_from = None
        if rep.results is not None and not self.aborting:
            roots, spawned = rep.results
            self.root_segments.extend(roots)
            self.spawned_results.extend(spawned)
        out = []
        if rep.error is not None and not self.aborting:
            self.error = rep.error
            self.aborting = True
            self.pool.clear()
            out.extend((r, Tag.ABORT, None) for r in self.workers)
        if not self.aborting and self.policy.balances:
            if rep.state != State.BUSY:
                self._serve(w, out)
            self._serve_idle(out)
        if self._quiescent():
            self.done = True
            out.extend((r, Tag.STOP, self.error) for r in self.workers)
        return out

    def _quiescent(self) -> bool:
        if not all(w.idle for w in self.workers.values()):
            return False
        if self.aborting:
            return all(w.aborted for w in self.workers.values())
        return self.finished == self.created

    def _mean_task_s(self) -> float:
        done = sum(w.done for w in self.workers.values())
        if not done:
            return 0.0
        return sum(w.mean_task_s * w.done for w in self.workers.values()) / done

    def _serve(self, w, out) -> None:
        """Answer a LOW/IDLE request from the pool, else by brokering a steal."""
        if w.seq_seen != w.sent_seq or w.awaiting_from is not None:
            return  # work is already on its way to it
        if self.pool:
            share = w.capacity / self.total_capacity
            k = self.policy.chunk(len(self.pool), share, self._mean_task_s())
            out.append(self._give(w, self.pool.take_front(k)))
            return
        victim = self._pick_victim(w)
        if victim is not None:
            w.awaiting_from = victim.rank
            victim.queued -= victim.queued // 2
            self.steals_brokered += 1
            out.append((victim.rank, Tag.STEAL, w.rank))

    def _serve_idle(self, out) -> None:
        # A status report may show a victim for workers that have been waiting.
        for w in self.workers.values():
            if w.idle and (self.pool or any(v.queued >= 2 for v in self.workers.values())):
                self._serve(w, out)

    def _pick_victim(self, thief):
        best, best_work = None, 0.0
        for v in self.workers.values():
            if v is thief or v.queued < 2 or v.aborted:
                continue
            work = v.queued_work
            if thief.state == State.LOW and (v.queued < 4 or work < 2 * thief.queued_work):
                continue  # only idle workers take small leftovers
            if work > best_work:
                best, best_work = v, work
        return best


def run_master(comm, master: Master, on_tick=None) -> None:
    """Drive ``master`` until the call ends: probe with back-off, never spin."""
    from mpi4py import MPI

    pending = []

    def send_all(msgs):
        for dest, tag, body in msgs:
            pending.append(comm.isend(body, dest=dest, tag=tag))

    send_all(master.start())
    backoff = Backoff()
    status = MPI.Status()
    while not master.done:
        msg = comm.improbe(source=MPI.ANY_SOURCE, tag=Tag.REPORT, status=status)
        if msg is None:
            backoff.sleep()
            if on_tick is not None:
                on_tick(master)
            continue
        backoff.reset()
        source = status.source
        send_all(master.handle(source, Tag.REPORT, msg.recv()))
        if len(pending) > 256 and MPI.Request.Testall(pending):
            pending.clear()
    MPI.Request.Waitall(pending)
