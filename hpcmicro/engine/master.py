"""The master's protocol machine: the pool, seeding, brokering steals, termination, snapshots.

``Master.handle(event) -> [instruction]``: events in (``Start``, ``WorkerReport``,
``Tick``, ``CheckpointDue``, ``Preempt``), instructions out (``Send*``,
``CutReady``). No clock, no MPI, no threads; nothing outside writes its fields.
``validate()`` checks its invariants (tests run it after every event).

Termination. The master counts tasks created (roots, plus children reported)
and finished. A worker reports a finished task together with the children it
spawned, so while any task is unfinished, created > finished at the master;
equality means everything ran and was reported. The call ends when, in
addition, every worker is idle with nothing addressed to it in flight: its
last report says IDLE, it has seen every TASKS message the master sent it, and
no steal answer or hand-back is on its way. Then no message is in flight, STOP
is safe, and no stray message can reach the next call.

Snapshots (checkpoints, preemption). The master stops handing out work and
brokering steals, waits until no tasks are in flight (every TASKS seen, every
steal answer acknowledged, no hand-back pending), then asks every worker for a
snapshot. Each worker answers at once with what it holds: queued tasks plus
the task it is running (as not yet run), and its finished results. With no
tasks moving between ranks, the pool plus the snapshots plus the results
received before each worker's snapshot form a consistent cut: every task is
either finished (its result is in the cut) or pending, never both. A
preemption that arrives during a checkpoint round lets that round finish, then
takes a new cut after the drain: the final cut is always the latest.

Hung tasks. A worker whose running task overran ``task_timeout`` says so
(``Report.hung``). If another worker can take over, the master tells it to
retire: it hands back everything it holds but the hung task's late result,
which it drops; the pool serves the hand-back to the others under any policy.
With no other worker left, the master waits for the slow one. Retiring never
overlaps a snapshot round (it waits for the round to end).
"""

from __future__ import annotations

import heapq
import math
from collections import deque

from ..constants import MASTER
from .combine import CombineError, PartialTree
from .cut import CallState
from .events import (
    Abort, CheckpointDue, Close, CutReady, Preempt, Report, SendAbort, SendDrain, SendRetire, SendSnapshot, SendSteal,
    SendStop, SendTasks, Start, State, Stop, Submit, Tick, WorkerReport,
)
from .taskqueue import TaskQueue
from .tasks import RootRun, Spawned

__all__ = ["Master", "WorkerView"]

SAMPLE_INTERVAL_S = 0.1  # queue lengths over time, for the stats
MAX_SAMPLES = 2000
MAX_DECISIONS = 1000  # the decision log keeps the latest ones (counts cover all)


class WorkerView:
    """What the master knows of one worker."""

    __slots__ = ("rank", "capacity", "state", "sent_seq", "seq_seen", "queued", "mean_task_s",
                 "awaiting_from", "aborted", "done", "hung", "retiring", "retired")

    def __init__(self, rank: int, capacity: float):
        self.rank = rank
        self.capacity = capacity
        self.state = State.BUSY
        self.sent_seq = 0
        self.seq_seen = 0
        self.queued = 0
        self.mean_task_s = 0.0
        self.awaiting_from: int | None = None  # victim rank whose steal answer is on its way here
        self.aborted = False
        self.done = 0
        self.hung = False  # its running task overran task_timeout
        self.retiring = False  # told to retire; its hand-back is on its way
        self.retired = False  # handed everything back: it gets no more work

    @property
    def settled(self) -> bool:
        """No tasks are on their way to or from it."""
        return self.seq_seen == self.sent_seq and self.awaiting_from is None and not self.retiring

    @property
    def idle(self) -> bool:
        return self.state == State.IDLE and self.settled

    @property
    def active(self) -> bool:
        """It may still get and give work."""
        return not (self.retired or self.retiring or self.aborted)

    @property
    def queued_work(self) -> float:
        return self.queued * max(self.mean_task_s, 1e-9)

    def __repr__(self):
        return (f"WorkerView({self.rank}, state={self.state}, queued={self.queued}, seq={self.seq_seen}/"
                f"{self.sent_seq}, awaiting={self.awaiting_from}, hung={self.hung}, retired={self.retired})")


class Master:
    """The scheduling logic of one call.

    ``runs``: the root tasks (RootRun) of a fresh call; ``resume``: a CallState
    to continue instead (its pending tasks become the pool, its results the
    starting point). ``op``: the reduction's function (map_reduce only).
    """

    def __init__(self, runs, policy, worker_ranks, capacities, mode, op=None, n_roots=0,
                 resume: CallState | None = None, payload_runs=None, preempt_grace_s: float = 10.0,
                 open_ended: bool = False, subordinate: bool = False):
        self.policy = policy
        # Open-ended (hpcmicro.futures): root tasks keep coming (Submit) until Close; results are taken
        # from ``segments`` as they arrive, by the driver.
        self.open = open_ended
        # A group master's inner Master (engine/group.py): the call's end is decided above it, so it
        # never ends by itself (not even on abort) and sends no STOP of its own.
        self.subordinate = subordinate
        self.mode = mode
        self.n_roots = n_roots
        self.workers = {r: WorkerView(r, c) for r, c in zip(worker_ranks, capacities)}
        self.tree = PartialTree(op, n_roots) if mode == "reduce" else None
        self.segments: list = []  # map results: [(id of the first task, [values in pre-order]), ...]
        self.failed: list = []
        if resume is not None:
            runs = _pending_entries(resume, payload_runs)
            self.segments = list(resume.segments)
            self.failed = list(resume.failed)
            if self.tree is not None:
                self.tree.merge(resume.lengths, resume.blocks)
        self.resumed_results = sum(len(values) for _, values in self.segments)
        self.pool = TaskQueue(runs)
        # Counted for this attempt only: on resume, the cut's pending tasks are all there is to do.
        self.created = len(self.pool)
        self.finished = 0
        self.error: dict | None = None
        self.aborting = False
        self.done = False
        self.stop: Stop | None = None
        self.messages = 0
        self.steals_brokered = 0
        self.bytes_from: dict = {}  # report bytes received from each worker
        self.queue_samples: list = []  # (seconds on the driver's clock, pool length, tasks queued at workers)
        self.decisions: deque = deque(maxlen=MAX_DECISIONS)  # (now, kind, details): see _note
        self.decision_counts: dict = {}
        self.preempt_grace_s = preempt_grace_s
        self.now = 0.0  # the latest time an event brought
        self._next_sample: float | None = None
        self._wanting: set = set()  # ranks whose last report asked for work (LOW/IDLE)
        self._idle: set = set()  # ranks idle and settled (WorkerView.idle), not retired
        self._hung: set = set()  # ranks whose task overran and that are not retired yet
        # Kept as reports come, so that no event costs a scan of every worker (with 10**4 workers such
        # scans were most of the master's time: docs/scale.md): the ranks that could be steal victims,
        # and the sums behind _share and _mean_task_s (over workers not retired; ``_slow`` counts those
        # with no measured task time yet).
        self._order = {r: i for i, r in enumerate(self.workers)}
        self._rich: set = set()  # ranks with queued >= policy.min_victim_queued
        # _rich's views most queued work first, for pick_victim: a heap of (-queued work, rank order,
        # rank, stamp), where only an entry with its rank's latest stamp counts (the others are left
        # to be dropped when popped). A steal then costs O(log n), not a scan of every victim.
        self._by_work: list = []
        self._stamp: dict = {}
        # With no pool, a thief is tried again only when it reports or when some worker's queued work
        # grew: nothing else can turn a failed steal into a possible one (_serve_wanting).
        self._fresh_thieves: set = set()
        self._grown: set = set()  # ranks whose queued work grew since the last serving pass
        self._queued_total = 0
        self._capacity_sum = float(sum(capacities))
        self._speed_sum = 0.0  # sum of capacity / mean_task_s over measured workers
        self._unmeasured = len(self.workers)
        self._live = len(self.workers)  # not retired
        self._done_total = 0
        self._weighted_s = 0.0  # sum of mean_task_s * done
        # snapshot rounds
        self.preempt_signal = 0
        self.drain_deadline: float | None = None
        self._want_round: str | None = None  # "checkpoint" or "preempt": a round to begin when settled
        self._round: str | None = None  # the reason of the round under way
        self.snapshot_waiting: set | None = None  # ranks whose snapshot has not arrived
        self._snapshots: list = []
        self._post_cut: list = []  # (results, failed) that arrived after their sender's cut
        self.final_cut_taken = False  # preemption: the cut after the drain exists
        # A subordinate's round ends here instead of in a CutReady (engine/group.py answers its own
        # master's SNAPSHOT with it): (pending entries, results, failed, tree part) as of the cut.
        self.subordinate_cut: tuple | None = None
        self.signal_seen = 0  # a subordinate passes a member's preemption signal up instead of acting on it

    # -- events ----------------------------------------------------------------------
    def handle(self, event) -> list:
        self.now = event.now
        kind = type(event)
        if kind is WorkerReport:
            return self._on_report(event)
        out: list = []
        if kind is Tick:
            self._sample()
        elif kind is Start:
            self._start(out)
        elif kind is CheckpointDue:
            if not (self.preempt_signal or self.aborting or self.done or self._want_round or self._round):
                self._want_round = "checkpoint"
                self._note("snapshot", reason="checkpoint")
        elif kind is Preempt:
            self._preempt(event.signum, out)
        elif kind is Submit:
            self._submit(event.runs)
        elif kind is Close:
            self.open = False
        elif kind is Abort:
            if not (self.aborting or self.done):
                self._abort(event.error, out)
        else:
            raise TypeError(f"master: unknown event {event!r}")
        self._advance(out)
        return out

    @property
    def pausing(self) -> bool:
        """No work is handed out (a snapshot round is wanted or under way)."""
        return self._want_round is not None or self._round is not None or bool(self.preempt_signal)

    def _start(self, out) -> None:
        views = list(self.workers.values())
        self._sample()
        if not views:
            return
        shares = self.policy.seed(self.pool, [w.capacity for w in views])
        for w, entries in zip(views, shares):
            if entries:
                out.append(self._give(w, entries))
                self._note("seed", worker=w.rank, tasks=sum(len(e) for e in entries))
            else:  # known to be idle and wanting: it need not say so (WorkerProtocol starts as IDLE)
                w.state = State.IDLE
                self._wanting.add(w.rank)
                self._idle.add(w.rank)
                self._fresh_thieves.add(w.rank)

    def _submit(self, runs) -> None:
        if not self.open:
            raise RuntimeError("master: tasks submitted to a call that is not open-ended, or closed")
        if self.aborting or self.done:
            return  # an aborted call runs nothing more: the driver fails what it submits
        for run in runs:
            self.pool.push(run)
            self.created += len(run)

    def _give(self, w: WorkerView, entries) -> SendTasks:
        w.sent_seq += 1
        w.state = State.BUSY
        self._wanting.discard(w.rank)
        self._idle.discard(w.rank)
        return SendTasks(w.rank, w.sent_seq, [e.packed() for e in entries])

    def _on_report(self, event: WorkerReport) -> list:
        source, rep = event.source, event.report
        self.messages += 1
        if event.nbytes:
            self.bytes_from[source] = self.bytes_from.get(source, 0) + event.nbytes
        w = self.workers[source]
        w.state = rep.state
        w.seq_seen = rep.seq_seen
        work_before = w.queued_work
        self._weighted_s -= w.mean_task_s * w.done
        if rep.mean_task_s and rep.mean_task_s != w.mean_task_s:
            if not w.retired:
                if w.mean_task_s:
                    self._speed_sum -= w.capacity / w.mean_task_s
                else:
                    self._unmeasured -= 1
                self._speed_sum += w.capacity / rep.mean_task_s
            w.mean_task_s = rep.mean_task_s
        self._set_queued(w, rep.queued)
        w.aborted = rep.aborted
        w.done += rep.done
        self._done_total += rep.done
        self._weighted_s += w.mean_task_s * w.done
        if w.queued_work > work_before:
            self._grown.add(source)
        self.finished += rep.done
        self.created += rep.spawned
        for victim in rep.acks:
            if w.awaiting_from == victim:
                w.awaiting_from = None
        # An unsettled worker (tasks or a steal answer on their way to it) cannot be served until it
        # reports again, which it will once they arrive: keeping it out saves every later event a look.
        if rep.state in State.WANTING and not w.retired and w.settled:
            self._wanting.add(source)
            self._fresh_thieves.add(source)
        else:
            self._wanting.discard(source)
        if w.idle and not w.retired:
            self._idle.add(source)
        else:
            self._idle.discard(source)
        out: list = []
        if self.aborting:
            pass  # results of an aborted call go nowhere; snapshots and hand-backs too
        else:
            waiting = self.snapshot_waiting
            if waiting is not None and source not in waiting and rep.snapshot is None:
                self._post_cut.append((rep.results, rep.failed))
            else:
                self._absorb(rep.results, rep.failed)
            try:
                if rep.handback is not None:
                    self._take_handback(w, rep.handback)
                if rep.snapshot is not None and waiting is not None and source in waiting:
                    self._take_snapshot(source, rep.snapshot, out)
            except CombineError as exc:  # two workers' blocks met here and the op failed on them
                self._abort(exc.failure(MASTER), out)
        self._track_hung(w, rep)
        if rep.signal and not self.preempt_signal:
            if self.subordinate:
                self.signal_seen = self.signal_seen or rep.signal
            else:
                self._preempt(rep.signal, out)
        if rep.error is not None and not self.aborting:
            self._abort(rep.error, out)
        self._advance(out)
        self._sample()
        return out

    def _track_hung(self, w: WorkerView, rep: Report) -> None:
        if w.retired or w.retiring:
            self._hung.discard(w.rank)
            return
        if rep.hung and not w.hung:
            self._note("hung", worker=w.rank)
        w.hung = rep.hung
        if rep.hung:
            self._hung.add(w.rank)
        else:
            self._hung.discard(w.rank)

    def _abort(self, error: dict, out) -> None:
        self.error = error
        self.aborting = True
        self.pool.clear()
        # A snapshot round under way can never complete now: drop it.
        self._want_round = self._round = None
        self.snapshot_waiting = None
        self._snapshots, self._post_cut = [], []
        self._note("abort", task=error.get("task_id"), worker=error.get("rank"))
        out.extend(SendAbort(r) for r in self.workers)

    # -- the state after each event ---------------------------------------------------
    def _advance(self, out) -> None:
        if self.done:
            return
        if self.pausing:
            self._maybe_begin_snapshot(out)
        elif not self.aborting:
            self._retire_hung(out)
            self._serve_wanting(out)
        if self._finished():
            self.done = True
            if self.error is not None:
                self.stop = Stop("error", self.error)
            elif self.preempt_signal:
                self.stop = Stop("preempted", self.preempt_signal)
            else:
                self.stop = Stop("ok", None)
            out.extend(SendStop(r, self.stop) for r in self.workers)

    def _absorb(self, results, failed) -> None:
        if results:
            self.segments.extend(results)
        if failed:
            self.failed.extend(failed)

    def _finished(self) -> bool:
        if self.subordinate or self.snapshot_waiting is not None or (
                self.open and not self.aborting and not self.preempt_signal):
            return False
        if not (self.aborting or self.preempt_signal) and (self.finished != self.created or self.pool):
            return False  # the cheap test first
        if self.preempt_signal and not self.aborting:
            return self.final_cut_taken and all(w.settled for w in self.workers.values() if not w.retired)
        if len(self._idle) != self._live:
            return False
        if self.aborting:
            return self.all_aborted()
        return self.finished == self.created and not self.pool

    # -- serving work ----------------------------------------------------------------
    def _serve_wanting(self, out) -> None:
        if not self._wanting:
            return
        workers = self.workers
        fresh, grown = self._fresh_thieves, self._grown
        self._fresh_thieves, self._grown = set(), set()
        if self.pool:
            for rank in sorted(self._wanting):  # sorted: the same decisions on every run
                w = workers[rank]
                if w.settled and w.state in State.WANTING and not w.retired:
                    self._serve(w, out)
            return
        # Only steals can serve them. A thief that found no victim before finds none now unless a
        # worker's queue grew since (victims only shrink otherwise), and then only that worker can
        # be its victim: new thieves look at every victim, old ones only at the grown ones. Without
        # this, every report at a call's end costs thieves x victims checks.
        if not any(workers[r].active for r in self._rich):
            return
        grown_victims = [workers[r] for r in sorted(grown & self._rich, key=self._order.__getitem__)]
        passes: list[tuple[set, list | None]] = [(fresh & self._wanting, None)]
        if grown_victims:
            passes.append((self._wanting - fresh, grown_victims))

        def demand(r):
            return (workers[r].state != State.IDLE, workers[r].queued_work, r)

        for thieves, victims in passes:
            # The least demanding thief first (IDLE before LOW, then less queued work of its own): once
            # one finds no victim, no later one can (Policy.pick_victim is monotone). Usually the first
            # fails, so take the least demanding one at a time rather than sorting them all.
            thieves = {r for r in thieves if workers[r].settled and workers[r].state in State.WANTING
                       and not workers[r].retired}
            while thieves:
                rank = min(thieves, key=demand)
                thieves.discard(rank)
                if not self._steal_for(workers[rank], out, victims):
                    break

    def _serve(self, w: WorkerView, out) -> bool:
        """Answer a LOW/IDLE worker from the pool, else by brokering a steal; whether it was served."""
        if self.pool:
            k = self.policy.chunk(len(self.pool), self._share(w), self._mean_task_s(), w.capacity)
            if k > 0:
                out.append(self._give(w, self.pool.take_front(k)))
                self._note("chunk", worker=w.rank, tasks=k, pool_left=len(self.pool),
                           asked="idle" if w.state == State.IDLE else "low")
                return True
            return False
        return self._steal_for(w, out)

    def _steal_for(self, w: WorkerView, out, victims=None) -> bool:
        """Broker a steal for w from the best of ``victims`` (default: every possible one)."""
        victim = self._pick_victim(w, victims)
        if victim is None:
            return False
        k = self.policy.steal_size(victim.queued)
        w.awaiting_from = victim.rank
        self._wanting.discard(w.rank)
        self._idle.discard(w.rank)
        self.steals_brokered += 1
        self._note("steal", thief=w.rank, victim=victim.rank, tasks=k, victim_queued=victim.queued,
                   victim_work_s=round(victim.queued_work, 6), asked="idle" if w.state == State.IDLE else "low")
        self._set_queued(victim, victim.queued - k)
        out.append(SendSteal(victim.rank, w.rank))
        return True

    # -- for a group master (engine/group.py), which runs a Master for its members ---------------
    def steal_for(self, thief: int) -> SendSteal | None:
        """Broker a steal for a thief outside this master's workers (another group): the
        instruction for the victim, or None when no worker holds enough to give."""
        if self.aborting or self.pausing or self.done:
            return None
        outsider = WorkerView(thief, 0.0)
        outsider.state = State.IDLE
        victim = self._pick_victim(outsider)
        if victim is None:
            return None
        k = self.policy.steal_size(victim.queued)
        self.steals_brokered += 1
        self._note("steal", thief=thief, victim=victim.rank, tasks=k, victim_queued=victim.queued, asked="outside")
        self._set_queued(victim, victim.queued - k)
        return SendSteal(victim.rank, thief)

    def take_results(self) -> tuple[list, list]:
        """The map results and failed tasks that arrived since the last call (the caller's now)."""
        segments, self.segments = self.segments, []
        failed, self.failed = self.failed, []
        return segments, failed

    def take_tree_part(self):
        """The combine tree's completed blocks (handed over: they are merged elsewhere now) and its lengths."""
        if self.tree is None:
            return None
        blocks, self.tree.blocks = self.tree.blocks, {}
        return self.tree.shippable_lengths(), blocks

    def all_drained(self) -> bool:
        """Every live worker is settled and runs nothing, nor will (drained for preemption, or idle)."""
        return all(w.settled and w.state in (State.DRAINED, State.IDLE) for w in self.workers.values()
                   if not w.retired)

    def give_from_pool(self, k: int) -> list:
        """About k tasks from the pool's back (the work it would hand out last), packed for sending."""
        return [e.packed() for e in self.pool.take_back(k)]

    @property
    def queued_at_workers(self) -> int:
        """Tasks waiting in the workers' queues, as their latest reports (and steals brokered) say."""
        return self._queued_total

    @property
    def mean_task_s(self) -> float:
        """Mean task time over every task reported (0.0 before any)."""
        return self._mean_task_s()

    @property
    def live_workers(self) -> int:
        """Workers not retired."""
        return self._live

    def all_idle(self) -> bool:
        """Every worker not retired is idle, with nothing addressed to it in flight."""
        return len(self._idle) == self._live

    def all_aborted(self) -> bool:
        return all(w.aborted for w in self.workers.values() if not w.retired)

    def _pick_victim(self, thief: WorkerView, victims: list | None = None):
        """The policy's victim for ``thief`` among ``victims`` (default: every worker holding enough to
        give), offered most queued work first, ties in rank order (Policy.pick_victim)."""
        if victims is not None:
            return self.policy.pick_victim(thief, sorted(victims, key=self._work_key))
        views = self._victims_by_work()
        try:
            return self.policy.pick_victim(thief, views)
        finally:
            views.close()  # puts back what it took

    def _work_key(self, w: WorkerView) -> tuple:
        return (-w.queued_work, self._order[w.rank])

    def _victims_by_work(self):
        """_rich's views, most queued work first, lazily from the heap; those taken go back on close."""
        heap, stamp, rich, taken = self._by_work, self._stamp, self._rich, []
        try:
            while heap:
                entry = heapq.heappop(heap)
                rank = entry[2]
                if entry[3] != stamp[rank] or rank not in rich:
                    continue  # stale: a newer entry, or none, stands for it
                taken.append(entry)
                yield self.workers[rank]
        finally:
            for entry in taken:
                heapq.heappush(heap, entry)

    def _index(self, w: WorkerView) -> None:
        """w's queued work changed: its heap entry (if it can be a victim) is a new one."""
        if w.rank not in self._rich:
            return
        heap, stamp = self._by_work, self._stamp
        stamp[w.rank] = s = stamp.get(w.rank, 0) + 1
        heapq.heappush(heap, (-w.queued_work, self._order[w.rank], w.rank, s))
        if len(heap) > 2 * len(self._rich) + 64:  # mostly stale: keep it proportional to the victims
            self._by_work = [e for e in heap if e[3] == stamp[e[2]] and e[2] in self._rich]
            heapq.heapify(self._by_work)

    def _share(self, w: WorkerView) -> float:
        """w's fraction of the pool's next hand-outs: capacity times measured speed.

        Speed is tasks per busy second as the workers report it, so GPU ranks
        (or faster nodes) get proportionally more once they have run a few
        tasks; before that, the capacity weights alone decide.
        """
        if self._unmeasured == 0 and self._speed_sum > 0:
            return (w.capacity / w.mean_task_s) / self._speed_sum
        return w.capacity / self._capacity_sum

    def _mean_task_s(self) -> float:
        return self._weighted_s / self._done_total if self._done_total else 0.0

    def _victim_floor(self, w: WorkerView) -> float:
        floor = self.policy.min_victim_queued
        return floor * w.capacity if self.policy.per_capacity else floor

    def _set_queued(self, w: WorkerView, queued: int) -> None:
        self._queued_total += queued - w.queued
        w.queued = queued
        rich = queued >= self._victim_floor(w)
        if rich != (w.rank in self._rich):
            if rich:
                self._rich.add(w.rank)
            else:
                self._rich.discard(w.rank)
        self._index(w)

    # -- hung workers ----------------------------------------------------------------
    def _retire_hung(self, out) -> None:
        for rank in sorted(self._hung):
            w = self.workers[rank]
            others = [v for v in self.workers.values() if v is not w and v.active and not v.hung]
            if not others:
                continue  # nobody could take over: wait for the slow one
            w.retiring = True
            self._hung.discard(rank)
            self._wanting.discard(rank)
            self._idle.discard(rank)
            self._note("retire", worker=rank, why="task overran task_timeout")
            out.append(SendRetire(rank))

    def _take_handback(self, w: WorkerView, handback) -> None:
        """A retired worker's tasks return to the pool, its finished reduction blocks to the tree."""
        w.retired = True
        w.retiring = False
        self._live -= 1
        self._idle.discard(w.rank)
        self._set_queued(w, 0)
        self._capacity_sum -= w.capacity
        if w.mean_task_s:
            self._speed_sum -= w.capacity / w.mean_task_s
        else:
            self._unmeasured -= 1
        entries, tree_part = handback
        for e in entries:
            self.pool.push(e)
        self._note("handback", worker=w.rank, tasks=sum(len(e) for e in entries))
        if tree_part is not None and self.tree is not None:
            self._merge_tree(*tree_part)

    def _merge_tree(self, lengths, blocks) -> None:
        tree = self.tree
        assert tree is not None
        new_lengths = any(k not in tree.lengths for k in lengths)
        tree.merge(lengths, blocks)
        if new_lengths:
            tree.settle()

    # -- snapshots -------------------------------------------------------------------
    def _preempt(self, signum: int, out) -> None:
        if self.preempt_signal or self.aborting or self.done:
            return
        self.preempt_signal = signum
        self._want_round = "preempt"  # after the round under way, if any: the final cut is the latest
        self.drain_deadline = self.now + self.preempt_grace_s
        self._note("preempt", signal=signum)
        out.extend(SendDrain(r) for r, w in self.workers.items() if not w.retired)

    def _maybe_begin_snapshot(self, out) -> None:
        if self._round is not None or self._want_round is None:
            return  # a round is under way, or none is wanted
        active = [w for w in self.workers.values() if not w.retired]
        if not all(w.settled for w in active):
            return  # tasks are still moving between ranks
        if self._want_round == "preempt":
            drained = all(w.state in (State.DRAINED, State.IDLE) for w in active)
            deadline = self.drain_deadline if self.drain_deadline is not None else 0.0
            if not (drained or self.now >= deadline):
                return
        self._round, self._want_round = self._want_round, None
        self.snapshot_waiting = {w.rank for w in active}
        self._snapshots = []
        out.extend(SendSnapshot(w.rank) for w in active)
        if not active:
            self._complete_snapshot(out)

    def _take_snapshot(self, source, snap, out) -> None:
        assert self.snapshot_waiting is not None
        self.snapshot_waiting.discard(source)
        self._snapshots.append(snap)
        if self.tree is not None and snap.get("tree") is not None:
            self._merge_tree(*snap["tree"])
        if not self.snapshot_waiting:
            self._complete_snapshot(out)

    def _complete_snapshot(self, out) -> None:
        pending = self.pool.entries()
        for snap in self._snapshots:
            pending.extend(snap["pending"])
        reason = self._round or "checkpoint"
        if self.subordinate:  # detached: the pool goes on cutting its runs before the answer is sent
            self.subordinate_cut = ([e.packed() for e in pending], *self.take_results(), self.take_tree_part())
        else:
            out.append(CutReady(self._cut(pending), reason))
        for results, failed in self._post_cut:
            self._absorb(results, failed)
        self._post_cut = []
        self._snapshots = []
        self.snapshot_waiting = None
        self._round = None
        if reason == "preempt":
            self.final_cut_taken = True

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
            state.segments = list(self.segments)
        return state

    def cut_now(self, pending) -> CallState:
        """The cut of a call whose workers are all in this process and stopped (``pending``: their queues)."""
        return self._cut(self.pool.entries() + list(pending))

    # -- observability ---------------------------------------------------------------
    def _note(self, kind: str, **details) -> None:
        """Log a scheduling decision: what was decided, for whom, and why (``hpcmicro report`` shows them)."""
        self.decisions.append((round(self.now, 6), kind, details))
        self.decision_counts[kind] = self.decision_counts.get(kind, 0) + 1

    def _sample(self) -> None:
        now = self.now
        if self._next_sample is not None and now < self._next_sample:
            return
        self._next_sample = now + SAMPLE_INTERVAL_S
        samples = self.queue_samples
        if len(samples) >= MAX_SAMPLES:
            del samples[1::2]  # keep the whole run at half the resolution
        samples.append((round(now, 4), len(self.pool), self._queued_total))

    # -- invariants ------------------------------------------------------------------
    def validate(self) -> None:
        """Raise AssertionError if the master's books are inconsistent (tests call it after every event)."""
        # Not created >= finished: a victim may give away children of the task it is running before its
        # report counts them, and the thief's report of one finished may come first. Termination does not
        # rest on it: the victim is busy until it reports them.
        assert self.created >= 0 and self.finished >= 0, (self.created, self.finished)
        assert len(self.pool) == sum(len(e) for e in self.pool.entries()), "pool count drifted"
        if self.pool.entries():
            keys = [e.key for e in self.pool.entries()]
            assert keys == sorted(keys), "pool out of order"
        for w in self.workers.values():
            assert 0 <= w.seq_seen <= w.sent_seq, w
            assert w.awaiting_from != w.rank, w
            assert not (w.retired and w.retiring), w
            assert not (w.rank in self._hung and (w.retired or w.retiring)), w
        if self.snapshot_waiting is not None:
            assert self._round is not None and self.snapshot_waiting <= set(self.workers)
        if self.aborting:
            assert not self.pool and self._round is None
        if self.done:
            assert self.stop is not None
            if self.stop.kind == "ok":
                assert self.created == self.finished and not self.pool
        if self.tree is not None:
            _validate_tree(self.tree)
        self._validate_sums()

    def _validate_sums(self) -> None:
        views = self.workers.values()
        live = [v for v in views if not v.retired]
        assert self._rich == {v.rank for v in views if v.queued >= self._victim_floor(v)}, "victim set drifted"
        assert self._queued_total == sum(v.queued for v in views), "queued total drifted"
        assert self._unmeasured == sum(1 for v in live if not v.mean_task_s), "unmeasured count drifted"
        assert self._live == len(live), "live count drifted"
        current = {e[2]: e[:2] for e in self._by_work if e[3] == self._stamp[e[2]] and e[2] in self._rich}
        assert current == {r: self._work_key(self.workers[r]) for r in self._rich}, "victim heap drifted"
        assert self._idle == {v.rank for v in live if v.idle}, "idle set drifted"
        assert self._done_total == sum(v.done for v in views)
        close = math.isclose
        assert close(self._capacity_sum, sum(v.capacity for v in live), rel_tol=1e-9, abs_tol=1e-9)
        assert close(self._speed_sum, sum(v.capacity / v.mean_task_s for v in live if v.mean_task_s),
                     rel_tol=1e-6, abs_tol=1e-9), "speed sum drifted"
        assert close(self._weighted_s, sum(v.mean_task_s * v.done for v in views), rel_tol=1e-6, abs_tol=1e-9)


def _validate_tree(tree: PartialTree) -> None:
    for (node, level, index) in tree.blocks:
        assert level >= 0 and index >= 0, (node, level, index)
        sibling = (node, level, index ^ 1)
        assert sibling not in tree.blocks, f"combine tree: sibling blocks {node, level, index} not merged"


def _pending_entries(state: CallState, payload_runs) -> list:
    """Queue entries for the pending tasks of a checkpointed call."""
    payloads = payload_runs  # the full payload list of the call, or None for decompositions
    entries: list = [RootRun(a, b, p, payloads, 0 if payloads is not None else None)
                     for a, b, p in state.pending_roots]
    entries.extend(Spawned(tuple(i), payload, p) for i, payload, p in state.pending_spawned)
    return entries
