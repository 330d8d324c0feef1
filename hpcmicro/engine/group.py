"""A group master: the master of a group of workers, and a single worker to the master above it.

One master serving every worker saturates near 10**5 events a second
(docs/scale.md). A two-level tree keeps each master's load bounded: the top
master's "workers" are group masters; each group master serves its members.

``GroupMaster.handle(event) -> [instruction]`` with ``Start``, ``Tick`` and
``GroupMessage`` (a message from the top master, a member, or a worker of
another group) in, ``Send*`` instructions out; no clock, no MPI, as Master.

How it is built: a real ``Master`` (open-ended and subordinate: it never ends by
itself) schedules the members, unchanged. Around it, the group speaks the
worker's protocol upwards:

- TASKS from the top (seeds, chunks) join the inner master's pool; it hands
  them out to members and brokers steals among them as it would for a call;
- a STEAL from the top (another group is idle) is answered from the pool's
  back if it holds enough, else by one member's queue (``Master.steal_for``:
  the member sends its steal answer straight to the thief group), else empty;
- a steal answer arriving from another group (sent by that group's master or
  one of its members) joins the pool and is acknowledged upwards in the name
  of that group's master, whose steal the top brokered;
- the group reports upwards like a worker: counts done and spawned (its
  members'), its queue (pool plus members' queues), its mean time per task
  divided by its members (a group of n runs n tasks at once, so the top's
  chunk and low-water rules see the group's rate), map results, errors, and
  IDLE only when its pool is empty and every member is idle and settled.

Termination is the top master's, unchanged: it counts created and finished
tasks and waits until every group is idle and settled; a group is idle only
when all its members are, so no task is anywhere. STOP and ABORT travel down
through the group. The deterministic reduction is untouched: members fold as
before, and the end-of-call merge of every rank's blocks gives the same bits.

Snapshots (checkpoints, preemption). The top master asks a group for its
snapshot only when every group is settled. The group then runs its inner
master's own round over its members (CheckpointDue: stop handing out, wait for
the members to settle, ask each for its snapshot) and answers upwards with the
group's cut: the pool plus every member's snapshot as pending, the results
taken before each member's snapshot, and the combine tree's blocks, which the
group hands over (they are the top's now). Results a member reports after its
snapshot go up in a later report, which the top takes as after the group's
cut. DRAIN is passed to every member; the group reports DRAINED once every
member is drained or idle and settled. A member's preemption signal goes up in
the group's next report: only the top decides a preemption.

Hung members (``task_timeout``) are retired by the group's inner master among
its members, as one master does; a group with one member waits for it. The top
never retires a group: a group master runs no kernel, so it never hangs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .events import (
    Abort, CheckpointDue, Report, SendDrain, SendReport, SendStop, SendTasks, Start, State, Stop, Submit, Tag, Tick,
    WorkerReport,
)
from .master import Master

__all__ = ["GroupMaster", "GroupMessage", "group_ranks", "group_masters", "group_of_ranks", "plan_groups", "top_policy",
           "auto_group_size", "GROUPS_FROM_WORKERS"]

# Below this many workers one master is the default: the simulator shows it at efficiency >= 0.85 with
# 10 ms tasks up to ~1,000 workers, and a second level only adds a hop (docs/scale.md).
GROUPS_FROM_WORKERS = 1024

# The top master's chunks to groups carry this much of a group's time (StealPolicy.batch_seconds is
# 0.02 s for a worker). The top's request rate is about groups / batch, so 0.1 s keeps it near 3,000
# a second for 300 groups (a fifth of what 0.02 s costs, docs/scale.md); the tail imbalance a large
# last chunk could leave is split by steals between groups, and inside a group by its members.
TOP_BATCH_SECONDS = 0.1


def top_policy(policy):
    """The policy the top master runs with over group masters: the same, with larger chunks."""
    if not hasattr(policy, "batch_seconds"):  # static: nothing is handed out after the seed
        return policy
    top = copy.copy(policy)
    top.batch_seconds = max(policy.batch_seconds, TOP_BATCH_SECONDS)
    top.per_capacity = True
    return top


@dataclass(frozen=True, slots=True)
class GroupMessage:
    """A message to a group master."""

    source: int
    tag: int
    body: Any
    now: float
    nbytes: int = 0


class GroupMaster:
    # How often a busy group tells the top master its counts and queue (as WorkerProtocol).
    STATUS_INTERVAL_S = 0.05

    def __init__(self, rank: int, top: int, members, capacities, policy, mode: str, op=None, n_roots: int = 0,
                 group_of: dict | None = None):
        self.rank = rank
        self.top = top
        self.policy = policy
        self.members = list(members)
        if not self.members:
            raise ValueError(f"group master {rank}: a group needs at least one member")
        self.inner = Master([], policy, self.members, list(capacities), mode, op=op, n_roots=n_roots,
                            open_ended=True, subordinate=True)
        self.group_of = group_of or {}  # any rank -> the rank of its group's master (steal answers' acks)
        self.seq_seen = 0  # TASKS messages from the top seen so far
        self.acks: list = []  # group masters whose steal answers arrived since the last report
        self.done_since = 0
        self.spawned_since = 0
        self.error: dict | None = None  # a member's error, to pass up once
        self.error_sent = False
        # What the last report said (None: stale). It starts as IDLE: the top takes a group it seeded
        # nothing for as idle, as it does a worker.
        self.last_state: int | None = State.IDLE
        self.last_aborted = False
        self.requested = False
        self.last_status = 0.0
        self.last_queued = 0
        self.stopped = False
        self.stop: Stop | None = None  # how the call ended (from the top's STOP)
        self.draining = False  # DRAIN came from the top (preemption)
        self.signal_sent = False
        self.now = 0.0

    # -- events ----------------------------------------------------------------------
    def handle(self, event) -> list:
        self.now = now = event.now
        kind = type(event)
        out: list = []
        if kind is GroupMessage:
            self._message(event, out)
        elif kind is Tick or kind is Start:
            out += self.inner.handle(kind(now))
        else:
            raise TypeError(f"group master: unknown event {event!r}")
        if self.stopped:
            return out
        cut = self.inner.subordinate_cut
        if cut is not None:  # the inner round asked for by the top's SNAPSHOT is complete: answer it
            self.inner.subordinate_cut = None
            pending, segments, failed, tree = cut
            state = self._state()
            if state == State.IDLE and (self.inner.segments or self.inner.failed):
                # Results that came after the cut are not in this report, though their tasks were counted
                # done: the top must not take the group for idle (and end the call) before they arrive.
                state = State.BUSY
            out.append(SendReport(self.top, self._report(state, segments, failed, {"pending": pending, "tree": tree})))
            self._maybe_report(out)  # those results at once, if with them the group is idle
        else:
            self._maybe_report(out)
        return out

    def _message(self, m: GroupMessage, out) -> None:
        inner, tag, body = self.inner, m.tag, m.body
        if tag == Tag.REPORT:
            if m.source not in inner.workers:
                raise RuntimeError(f"group master {self.rank}: a report from rank {m.source}, not a member")
            self.done_since += body.done
            self.spawned_since += body.spawned
            if body.error is not None and self.error is None:
                self.error = body.error
            out += inner.handle(WorkerReport(m.source, body, m.now, m.nbytes))
        elif tag == Tag.TASKS:
            seq, entries = body
            if seq is not None:
                self.seq_seen = seq
            else:  # a steal answer, from another group's master or one of its members
                self.acks.append(self.group_of.get(m.source, m.source))
            if entries:
                out += inner.handle(Submit(entries, m.now))
            self.requested = False
            self.last_state = None  # whatever we said before is stale
        elif tag == Tag.STEAL:
            self._give(body, out)
        elif tag == Tag.ABORT:
            out += inner.handle(Abort({"message": "aborted by the top master"}, m.now))
        elif tag == Tag.STOP:
            self.stopped = True
            self.stop = body
            out += [SendStop(r, body) for r in self.members]
        elif tag == Tag.SNAPSHOT:
            # The top sends it only when the call is settled at its level and no round is under way here.
            if inner.pausing:
                raise RuntimeError(f"group master {self.rank}: SNAPSHOT while a round is under way")
            out += inner.handle(CheckpointDue(m.now))
        elif tag == Tag.DRAIN:
            self.draining = True
            out += [SendDrain(r) for r in self.members if not inner.workers[r].retired]
        else:
            raise RuntimeError(f"group master {self.rank}: unexpected message tag {tag} from rank {m.source}")

    def _give(self, thief: int, out) -> None:
        """Answer the top's steal for ``thief`` (another group's master)."""
        inner = self.inner
        pool = len(inner.pool)
        if not inner.aborting and pool >= self.policy.min_victim_queued:
            out.append(SendTasks(thief, None, inner.give_from_pool(self.policy.steal_size(pool))))
            return
        ins = inner.steal_for(thief)
        out.append(ins if ins is not None else SendTasks(thief, None, []))  # the thief waits for an answer

    # -- reports upwards -------------------------------------------------------------
    def _state(self) -> int:
        inner = self.inner
        if inner.all_idle() and (inner.aborting or not inner.pool):
            return State.IDLE
        if self.draining:
            return State.DRAINED if inner.all_drained() else State.BUSY
        if inner.aborting:
            return State.BUSY
        # Ask for more while the pool holds less than a member's low-water mark per member: members'
        # own requests are then served from the pool, not after a round trip to the top.
        if self.policy.wants_more(len(inner.pool) / (inner.live_workers or 1), inner.mean_task_s):
            return State.LOW
        return State.BUSY

    @property
    def queued(self) -> int:
        """Tasks waiting in the group: its pool and its members' queues."""
        return len(self.inner.pool) + self.inner.queued_at_workers

    def _maybe_report(self, out) -> None:
        inner = self.inner
        state = self._state()
        aborted = inner.aborting and inner.all_aborted()
        urgent = (
            (self.error is not None and not self.error_sent)
            or (inner.signal_seen and not self.signal_sent)
            or aborted != self.last_aborted
            or (state != self.last_state and (state in State.WANTING or state == State.DRAINED))
            or (state in State.WANTING and self.acks and not self.requested)
        )
        if not urgent:
            if self.now - self.last_status < self.STATUS_INTERVAL_S:
                return
            if not (self.done_since or self.spawned_since or self.acks or inner.segments or inner.failed
                    or self.queued != self.last_queued or state != self.last_state):
                return
        segments, failed = inner.take_results()
        out.append(SendReport(self.top, self._report(state, segments, failed)))

    def _report(self, state: int, segments, failed, snapshot=None) -> Report:
        """The group's report upwards (``segments``, ``failed``: taken from the inner master)."""
        inner = self.inner
        queued = self.queued
        signal = 0
        if inner.signal_seen and not self.signal_sent:
            signal, self.signal_sent = inner.signal_seen, True
        rep = Report(state, self.seq_seen, self.done_since, self.spawned_since, queued,
                     inner.mean_task_s / (inner.live_workers or 1), segments or None, tuple(self.acks),
                     inner.aborting and inner.all_aborted(), self.error if not self.error_sent else None,
                     tuple(failed), snapshot, None, signal)
        if self.error is not None:
            self.error_sent = True
        self.done_since = self.spawned_since = 0
        self.acks = []
        self.last_state = state
        self.last_aborted = rep.aborted
        self.last_status = self.now
        self.last_queued = queued
        self.requested = state in State.WANTING
        return rep

    # -- invariants ------------------------------------------------------------------
    def validate(self) -> None:
        self.inner.validate()
        assert self.seq_seen >= 0 and self.done_since >= 0 and self.spawned_since >= 0
        assert self.rank not in self.inner.workers


def auto_group_size(n_workers: int) -> int | None:
    """The default layout: None (one master) below GROUPS_FROM_WORKERS workers, else groups of about
    sqrt(n): the top then serves as many groups as each group has members, so neither level's load
    (requests a second, which grow with the ranks it serves) is much above the other's."""
    if n_workers < GROUPS_FROM_WORKERS:
        return None
    return max(2, round(n_workers ** 0.5))


def group_ranks(n_workers: int, group_size: int, first: int = 1) -> list[tuple[int, list[int]]]:
    """A two-level layout by fixed size: ``[(group master rank, [member ranks]), ...]``.

    Group masters take ranks ``first .. first+G-1`` and members follow, in
    groups of ``group_size`` (the last one may be smaller).
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size!r}")
    n_groups = -(-n_workers // group_size)
    base = first + n_groups
    return [(first + g, list(range(base + g * group_size, base + min(n_workers, (g + 1) * group_size))))
            for g in range(n_groups)]


def plan_groups(n_ranks: int, group_size, node_of=None) -> list[tuple[int, list[int]]] | None:
    """The layout of a call on ranks ``0 .. n_ranks-1`` (rank 0 the top master): ``[(group master, [members])]``,
    or None for one master.

    ``group_size``: "auto" (one master below GROUPS_FROM_WORKERS workers; above, one group per node if
    the job spans several nodes, else groups of about sqrt(n)), "node" (one group per node), an
    integer k (groups of k members), or None/0 (one master). ``node_of[r]``: rank r's node (any
    hashable; needed for "node", and for "auto" above the threshold).

    A group master is a rank of its own: the lowest of its block (fixed size) or of its node, so that
    its members are its neighbours. A node or block left with no member gives its rank to the group
    before it as a member.
    """
    workers = list(range(1, n_ranks))
    if not group_size:
        return None
    if group_size == "auto":
        if auto_group_size(len(workers)) is None:
            return None
        multi_node = node_of is not None and len({node_of[r] for r in workers}) > 1
        group_size = "node" if multi_node else auto_group_size(len(workers))
    if group_size == "node":
        if node_of is None:
            raise ValueError("group_size='node' needs every rank's node")
        blocks: dict = {}
        for r in workers:
            blocks.setdefault(node_of[r], []).append(r)
        chunks = list(blocks.values())
    else:
        k = group_size + 1  # the group master and its members
        chunks = [workers[i:i + k] for i in range(0, len(workers), k)]
    layout: list[tuple[int, list[int]]] = []
    orphans: list[int] = []  # ranks of chunks too small to hold a group master and a member
    for chunk in chunks:
        if len(chunk) < 2:
            orphans += chunk
        else:
            layout.append((chunk[0], chunk[1:]))
    if not layout:
        return None  # too few ranks for even one group
    for r in orphans:  # a member of the nearest group before it (or the first group)
        before = [i for i, (g, _) in enumerate(layout) if g < r]
        layout[before[-1] if before else 0][1].append(r)
    return [(g, sorted(m)) for g, m in layout]


def group_masters(layout) -> set:
    """The ranks of a layout's group masters (none for None: one master)."""
    return {g for g, _ in layout or ()}


def group_of_ranks(layout) -> dict:
    """Every rank of a layout -> the rank of its group's master (a group master maps to itself)."""
    return {r: g for g, members in layout for r in members} | {g: g for g, _ in layout}
