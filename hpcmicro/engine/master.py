"""Master side: the pool, seeding, brokering steals, termination, snapshots.

``Master`` is a state machine with no MPI in it: feed it ``handle(source,
tag, body)`` and ``tick(now)`` and it returns the messages to send as
``(dest, tag, body)``. ``run_master`` drives it over a communicator.

Termination. The master counts tasks created (roots, plus children reported)
and finished. A worker reports a finished task together with the children it
spawned, so while any task is unfinished, created > finished at the master;
equality means everything ran and was reported. The call ends when, in
addition, every worker is idle with nothing addressed to it in flight: its
last report says IDLE, it has seen every TASKS message the master sent it,
and no steal answer is on its way to it. Then no message is in flight, STOP
is safe, and no stray message can reach the next call.

Snapshots (checkpoints, preemption). The master stops handing out work and
brokering steals, waits until no tasks are in flight (every TASKS seen, every
steal answer acknowledged), then asks every worker for a snapshot. Each worker
answers at once from its mailbox thread with what it holds: queued tasks plus
the task it is running (as not yet run), and its finished results. With no
tasks moving between ranks, the pool plus the snapshots plus the results
received before each worker's snapshot form a consistent cut: every task is
either finished (its result is in the cut) or pending, never both.
"""

from __future__ import annotations

import time

from ..io.checkpoint import CallState
from .events import Backoff, State, Stop, Tag
from .combine import PartialTree
from .taskqueue import TaskQueue
from .tasks import RootRun, Spawned

__all__ = ["Master", "run_master"]


class WorkerView:
    """What the master knows of one worker."""

    __slots__ = ("rank", "capacity", "state", "sent_seq", "seq_seen", "queued", "mean_task_s",
                 "awaiting_from", "aborted", "done", "retired")

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
        self.retired = False  # its kernel hung: it gets no more work

    @property
    def settled(self) -> bool:
        """No tasks are on their way to it."""
        return self.seq_seen == self.sent_seq and self.awaiting_from is None

    @property
    def idle(self) -> bool:
        return self.state == State.IDLE and self.settled

    @property
    def queued_work(self) -> float:
        return self.queued * max(self.mean_task_s, 1e-9)


class Master:
    """The scheduling logic of one call.

    ``runs``: the root tasks (RootRun) of a fresh call; ``resume``: a CallState
    to continue instead (its pending tasks become the pool, its results the
    starting point). ``op``: the reduction's function (map_reduce only).
    """

    def __init__(self, runs, policy, worker_ranks, capacities, mode, op=None, n_roots=0,
                 resume: CallState | None = None, payload_runs=None, preempt_grace_s: float = 10.0):
        self.policy = policy
        self.mode = mode
        self.n_roots = n_roots
        self.workers = {r: WorkerView(r, c) for r, c in zip(worker_ranks, capacities)}
        self.tree = PartialTree(op, n_roots) if mode == "reduce" else None
        self.root_segments: list = []
        self.spawned_results: list = []
        self.failed: list = []
        if resume is not None:
            runs = _pending_entries(resume, payload_runs)
            self.root_segments = list(resume.root_segments)
            self.spawned_results = list(resume.spawned_results)
            self.failed = list(resume.failed)
            if self.tree is not None:
                self.tree.merge(resume.lengths, resume.blocks)
        if policy.balances:
            self.pool = TaskQueue(runs)
        else:  # static: contiguous id ranges, whatever the priorities
            self.pool = TaskQueue()
            self._static_entries = sorted(runs, key=lambda e: e.key[1])
        self.created = sum(len(r) for r in runs)
        self.finished = 0
        self.error: dict | None = None
        self.aborting = False
        self.done = False
        self.stop = None
        self.messages = 0
        self.steals_brokered = 0
        self.bytes_from: dict = {}  # report bytes received from each worker
        self.queue_samples: list = []  # (seconds since start, pool length, tasks queued at workers)
        self.preempt_grace_s = preempt_grace_s
        # snapshot rounds
        self.pausing = False  # no work handed out until the round ends
        self.snapshot_reason = None  # "checkpoint" or "preempt"
        self.snapshot_waiting: set | None = None  # ranks whose snapshot has not arrived
        self._snapshots: list = []
        self._post_cut: list = []  # (results, failed) that arrived after their sender's cut
        self.checkpoint: CallState | None = None  # the latest consistent cut, for the driver to write
        self.preempt_signal = 0
        self.drain_deadline = None

    # -- start -----------------------------------------------------------------------
    def start(self) -> list:
        views = list(self.workers.values())
        counts = self.policy.seed_counts(self.created, [w.capacity for w in views])
        out = []
        if self.policy.balances:
            source = self.pool
        else:
            source = TaskQueue()
            source._entries = list(reversed(self._static_entries))  # id order, front last
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
        out = []
        if not self.aborting:
            after_cut = self.snapshot_waiting is not None and source not in self.snapshot_waiting \
                and rep.snapshot is None
            if after_cut:
                self._post_cut.append((rep.results, rep.failed))
            else:
                self._absorb(rep.results, rep.failed)
            if rep.snapshot is not None:
                self._take_snapshot(source, rep.snapshot)
            if rep.handback is not None:
                self._take_handback(w, rep.handback)
        if rep.signal and not self.preempt_signal:
            out.extend(self.preempt(rep.signal))
        if rep.error is not None and not self.aborting:
            self.error = rep.error
            self.aborting = True
            self.pool.clear()
            out.extend((r, Tag.ABORT, None) for r in self.workers)
        out.extend(self._advance())
        return out

    def tick(self, now: float) -> list:
        """Called by the driver while no message arrives: deadlines (the drain's grace)."""
        return self._advance(now)

    def _advance(self, now: float | None = None) -> list:
        out = []
        if self.pausing:
            self._maybe_begin_snapshot(out, now)
        elif not self.aborting and self.policy.balances and not self.preempt_signal:
            self._serve_all(out)
        if self._finished():
            self.done = True
            if self.error is not None:
                self.stop = Stop("error", self.error)
            elif self.preempt_signal:
                self.stop = Stop("preempted", self.preempt_signal)
            else:
                self.stop = Stop("ok", None)
            out.extend((r, Tag.STOP, self.stop) for r in self.workers)
        return out

    def _absorb(self, results, failed) -> None:
        if results is not None:
            roots, spawned = results
            self.root_segments.extend(roots)
            self.spawned_results.extend(spawned)
        if failed:
            self.failed.extend(failed)

    def _finished(self) -> bool:
        active = [w for w in self.workers.values() if not w.retired]
        if self.snapshot_waiting is not None:
            return False
        if self.preempt_signal:
            return self.checkpoint is not None and self.snapshot_reason is None and all(w.settled for w in active)
        if not all(w.idle for w in active):
            return False
        if self.aborting:
            return all(w.aborted for w in active)
        return self.finished == self.created and not self.pool

    # -- serving work ----------------------------------------------------------------
    def _serve_all(self, out) -> None:
        for w in self.workers.values():
            if w.retired or w.state == State.BUSY:
                continue
            self._serve(w, out)

    def _serve(self, w, out) -> None:
        """Answer a LOW/IDLE worker from the pool, else by brokering a steal."""
        if not w.settled:
            return  # work is already on its way to it
        if self.pool:
            k = self.policy.chunk(len(self.pool), self._share(w), self._mean_task_s())
            out.append(self._give(w, self.pool.take_front(k)))
            return
        victim = self._pick_victim(w)
        if victim is not None:
            w.awaiting_from = victim.rank
            victim.queued -= victim.queued // 2
            self.steals_brokered += 1
            out.append((victim.rank, Tag.STEAL, w.rank))

    def _share(self, w) -> float:
        """w's fraction of the pool's next hand-outs: capacity times measured speed.

        Speed is tasks per busy second as the workers report it, so GPU ranks
        (or faster nodes) get proportionally more once they have run a few
        tasks; before that, the capacity weights alone decide.
        """
        views = [v for v in self.workers.values() if not v.retired]
        if all(v.mean_task_s > 0 for v in views):
            weight = {v.rank: v.capacity / v.mean_task_s for v in views}
        else:
            weight = {v.rank: v.capacity for v in views}
        return weight[w.rank] / sum(weight.values())

    def _mean_task_s(self) -> float:
        done = sum(w.done for w in self.workers.values())
        if not done:
            return 0.0
        return sum(w.mean_task_s * w.done for w in self.workers.values()) / done

    def _pick_victim(self, thief):
        if thief.state == State.IDLE:
            min_queued, factor = 2, 0.0
        else:  # LOW: only take from a clearly fuller queue, so neighbours don't trade back and forth
            min_queued, factor = 4, 2.0
        best, best_work = None, 0.0
        for v in self.workers.values():
            if v is thief or v.retired or v.aborted or v.queued < min_queued:
                continue
            work = v.queued_work
            if work > best_work and work >= factor * thief.queued_work:
                best, best_work = v, work
        return best

    # -- hung workers ----------------------------------------------------------------
    def _take_handback(self, w, handback) -> None:
        """A worker's kernel overran task_timeout: its tasks return to the pool."""
        w.retired = True
        w.queued = 0
        entries, tree_part = handback
        for e in entries:
            self.pool.push(e)
        if tree_part is not None and self.tree is not None:
            self._merge_tree(*tree_part)

    def _merge_tree(self, lengths, blocks) -> None:
        new_lengths = any(k not in self.tree.lengths for k in lengths)
        self.tree.merge(lengths, blocks)
        if new_lengths:
            self.tree.settle()

    # -- snapshots -------------------------------------------------------------------
    def request_snapshot(self) -> list:
        """Begin a checkpoint round (ignored while one is under way or the call is ending)."""
        if self.pausing or self.aborting or self.done:
            return []
        self.pausing = True
        self.snapshot_reason = "checkpoint"
        return self._advance()

    def preempt(self, signum: int) -> list:
        """A rank got SIGTERM/SIGUSR1: drain, snapshot, stop."""
        if self.preempt_signal or self.aborting or self.done:
            return []
        self.preempt_signal = signum
        self.pausing = True
        self.snapshot_reason = "preempt"
        self.checkpoint = None
        self.drain_deadline = time.monotonic() + self.preempt_grace_s
        return [(r, Tag.DRAIN, None) for r, w in self.workers.items() if not w.retired]

    def _maybe_begin_snapshot(self, out, now) -> None:
        if self.snapshot_waiting is not None or self.snapshot_reason is None:
            return  # a round is under way, or the preemption's round is done
        active = [w for w in self.workers.values() if not w.retired]
        if not all(w.settled for w in active):
            return  # tasks are still moving between ranks
        if self.snapshot_reason == "preempt":
            drained = all(w.state in (State.DRAINED, State.IDLE) for w in active)
            timed_out = now is not None and self.drain_deadline is not None and now >= self.drain_deadline
            if not (drained or timed_out):
                return
        self.snapshot_waiting = {w.rank for w in active}
        self._snapshots = []
        out.extend((w.rank, Tag.SNAPSHOT, None) for w in active)
        if not active:
            self._complete_snapshot()

    def _take_snapshot(self, source, snap) -> None:
        self.snapshot_waiting.discard(source)
        self._snapshots.append(snap)
        if self.tree is not None and snap.get("tree") is not None:
            self._merge_tree(*snap["tree"])
        if not self.snapshot_waiting:
            self._complete_snapshot()

    def _complete_snapshot(self) -> None:
        pending = self.pool.entries()
        for snap in self._snapshots:
            pending.extend(snap["pending"])
        self.checkpoint = self._cut(pending)
        for results, failed in self._post_cut:
            self._absorb(results, failed)
        self._post_cut = []
        self._snapshots = []
        self.snapshot_waiting = None
        self.snapshot_reason = None
        if not self.preempt_signal:
            self.pausing = False

    def _cut(self, pending) -> CallState:
        state = CallState(index=-1, identity="", kind="map" if self.mode == "map" else "map_reduce",
                          n_roots=self.n_roots, created=self.created, finished=self.finished)
        for e in pending:
            if isinstance(e, RootRun):
                state.pending_roots.append((e.start, e.stop, e.priority))
            else:
                state.pending_spawned.append((e.id, e.payload, e.priority))
        state.pending_roots.sort()
        state.pending_spawned.sort(key=lambda t: t[0])
        state.failed = list(self.failed)
        if self.tree is not None:
            state.blocks = dict(self.tree.blocks)
            state.lengths = dict(self.tree.lengths)
        else:
            state.root_segments = list(self.root_segments)
            state.spawned_results = list(self.spawned_results)
        return state


def _pending_entries(state: CallState, payload_runs) -> list:
    """Queue entries for the pending tasks of a checkpointed call."""
    payloads = payload_runs  # the full payload list of the call, or None for decompositions
    entries = [RootRun(a, b, p, payloads, 0 if payloads is not None else None) for a, b, p in state.pending_roots]
    entries.extend(Spawned(tuple(i), payload, p) for i, payload, p in state.pending_spawned)
    return entries


SAMPLE_INTERVAL_S = 0.1  # queue lengths over time, for the stats
MAX_SAMPLES = 2000


def _sample(master, t) -> None:
    samples = master.queue_samples
    if len(samples) >= MAX_SAMPLES:
        del samples[1::2]  # keep the whole run at half the resolution
    samples.append((round(t, 4), len(master.pool), sum(w.queued for w in master.workers.values())))


def run_master(comm, master: Master, checkpoint_every: float | None = None, on_checkpoint=None,
               progress=None) -> None:
    """Drive ``master`` until the call ends: probe with back-off, never spin.

    Every ``checkpoint_every`` seconds it starts a snapshot round and hands
    each consistent cut to ``on_checkpoint`` (which must not block for long:
    writing happens in a background thread). ``progress`` (a Progress) is
    updated as tasks finish.
    """
    from mpi4py import MPI

    from ..mpi import signals

    pending = []

    def send_all(msgs):
        for dest, tag, body in msgs:
            pending.append(comm.isend(body, dest=dest, tag=tag))

    send_all(master.start())
    backoff = Backoff()
    status = MPI.Status()
    start = time.monotonic()
    next_checkpoint = start + checkpoint_every if checkpoint_every else None
    next_sample = start
    while not master.done:
        if signals.requested() and not master.preempt_signal:
            send_all(master.preempt(signals.requested()))
        now = time.monotonic()
        if now >= next_sample:
            _sample(master, now - start)
            next_sample = now + SAMPLE_INTERVAL_S
            if progress is not None:
                progress.update(master.finished, master.created, now)
        msg = comm.improbe(source=MPI.ANY_SOURCE, tag=Tag.REPORT, status=status)
        if msg is None:
            now = time.monotonic()
            if next_checkpoint is not None and now >= next_checkpoint:
                send_all(master.request_snapshot())
                next_checkpoint = now + checkpoint_every
            send_all(master.tick(now))
            if master.checkpoint is not None and on_checkpoint is not None and not master.preempt_signal:
                on_checkpoint(master.checkpoint)
                master.checkpoint = None
            if not master.done:
                backoff.sleep()
            continue
        backoff.reset()
        body = msg.recv()
        master.bytes_from[status.source] = master.bytes_from.get(status.source, 0) + status.Get_count(MPI.BYTE)
        send_all(master.handle(status.source, Tag.REPORT, body))
        if len(pending) > 256 and MPI.Request.Testall(pending):
            pending.clear()
    MPI.Request.Waitall(pending)
    _sample(master, time.monotonic() - start)
    if progress is not None:
        progress.finish(master.finished, master.created)
