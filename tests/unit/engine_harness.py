"""A deterministic, single-threaded harness around the engine's pure protocol machines.

A ``Cluster`` holds the real ``Master``, real ``WorkerProtocol`` + ``Executor``
pairs running real kernels, and the messages in flight between them. Each
``step()`` picks one thing to happen with a seeded RNG: deliver the oldest
message of some sender->receiver pair (pairs stay FIFO, as MPI guarantees), let
a worker's kernel thread take a step, or let time pass on the master. After
every event it checks the machines' own invariants (``validate()``) and the
global one: every task is pending or finished exactly once.

No MPI, no threads, no clock: the time is the harness's own counter.
"""

from __future__ import annotations

import random
from collections import deque

from hpcmicro.engine.events import (
    CheckpointDue, CutReady, Preempt, Report, Start, Tag, TaskRan, Tick, WorkerReport, worker_event,
)
from hpcmicro.engine.executor import Executor
from hpcmicro.engine.group import GroupMaster, GroupMessage, group_of_ranks, group_ranks, top_policy
from hpcmicro.engine.master import Master
from hpcmicro.engine.tasks import RootRun, Spawned, TaskSource
from hpcmicro.engine.worker import EXIT, RUN, WorkerProtocol


def preorder_ids(kernel, source) -> list:
    """Every task id of a call in pre-order, from running its (pure) kernel serially."""
    from hpcmicro.engine import context as taskcontext

    ids: list = []
    children: list = []
    ctx = taskcontext.TaskContext(0, 1, lambda cid, payload, prio: children.append((cid, payload)))
    taskcontext._set_current(ctx)
    try:
        stack = [((i,), source.decomposition.payload(i) if source.payloads is None else source.payloads[i])
                 for i in reversed(range(source.n))]
        while stack:
            tid, payload = stack.pop()
            ids.append(tid)
            ctx.task_id = tid
            try:
                kernel(payload)
            except Exception:  # a failing task spawns nothing
                children.clear()
            stack.extend(reversed(children))
            children.clear()
    finally:
        taskcontext._set_current(None)
    return ids


def task_ids(entry):
    if isinstance(entry, RootRun):
        return [(i,) for i in range(entry.start, entry.stop)]
    return [entry.id]


class Cluster:
    """Master 0 and workers 1..n, with messages in flight between them.

    ``group_size``: two levels (engine/group.py): group masters take ranks 1..G, and the workers
    follow in groups of ``group_size``."""

    def __init__(self, kernel, tasks, policy, n_workers, mode="map", op=None, seed=0, resume=None,
                 task_timeout=None, capacities=None, retries=0, on_error="raise", group_size=None,
                 slices=False, meanwhile=0.0):
        """``slices``: a kernel step is ``Executor.run_slice`` (one pop: a task, or a run of siblings)
        instead of ``run_one``. ``meanwhile``: the chance that a message is delivered while a task runs,
        as a mailbox thread would (a steal or a snapshot in the middle of a run)."""
        self.rng = random.Random(seed)
        self.slices = slices
        if meanwhile:
            inner = kernel

            def kernel(payload):
                if self.rng.random() < meanwhile:
                    self.deliver_one()
                return inner(payload)
        self.source = TaskSource(tasks)
        self.mode = mode
        self.n_roots = self.source.n
        self.groups: dict = {}
        boss: dict = {}
        if group_size:
            layout = group_ranks(n_workers, group_size)
            ranks = [r for _, members in layout for r in members]
            group_of = group_of_ranks(layout)
            caps = dict(zip(ranks, capacities or [1.0] * n_workers))
            for g, members in layout:
                self.groups[g] = GroupMaster(g, 0, members, [caps[r] for r in members], policy, mode, op=op,
                                             n_roots=self.n_roots, group_of=group_of)
                boss.update(dict.fromkeys(members, g))
            top_ranks, top_caps = [g for g, _ in layout], [sum(caps[r] for r in m) for _, m in layout]
        else:
            ranks = list(range(1, n_workers + 1))
            boss = dict.fromkeys(ranks, 0)
            top_ranks, top_caps = ranks, capacities or [1.0] * n_workers
        self.master = Master(self.source.runs(), top_policy(policy) if group_size else policy, top_ranks, top_caps,
                             mode, op=op,
                             n_roots=self.n_roots, resume=resume, payload_runs=self.source.payloads)
        decomposition = tasks if not isinstance(tasks, list) else None
        size = max(ranks) + 1
        self.executors = {r: Executor(kernel, mode, decomposition, self.n_roots, op, r, size,
                                      retries=retries, on_error=on_error, retry_backoff_s=0.0) for r in ranks}
        self.workers = {r: WorkerProtocol(ex, policy, boss[r], task_timeout) for r, ex in self.executors.items()}
        self.pairs: dict = {}  # (source, dest) -> deque of (tag, body)
        self.now = 0.0
        self.cuts: list = []  # CutReady instructions, in order
        self.events = 0
        self.validate_every = 1
        self.kernel = inner if meanwhile else kernel
        self._preorder = None  # every task id in pre-order, once the tree has spawned (expand)
        self._position: dict = {}
        self._send(0, self.master.handle(Start(0.0)))
        for g, group in self.groups.items():
            self._send(g, group.handle(Start(0.0)))
        self.check()

    # -- plumbing --------------------------------------------------------------------
    def _send(self, source, instructions) -> None:
        for ins in instructions:
            if isinstance(ins, CutReady):
                self.cuts.append(ins)
                continue
            self.pairs.setdefault((source, ins.dest), deque()).append((ins.tag, ins.body))

    def in_flight(self) -> int:
        return sum(len(q) for q in self.pairs.values())

    def deliver_one(self) -> bool:
        live = [p for p, q in self.pairs.items() if q]
        if not live:
            return False
        source, dest = self.rng.choice(sorted(live))
        tag, body = self.pairs[(source, dest)].popleft()
        if dest == 0:
            assert tag == Tag.REPORT
            self._send(0, self.master.handle(WorkerReport(source, body, self.now)))
        elif dest in self.groups:
            self._send(dest, self.groups[dest].handle(GroupMessage(source, tag, body, self.now)))
        else:
            self._send(dest, self.workers[dest].handle(worker_event(source, tag, body)))
        return True

    def kernel_step(self, rank) -> bool:
        """Rank's kernel thread does what its protocol says; False if it only waits."""
        proto, ex = self.workers[rank], self.executors[rank]
        step, out = proto.next_step(self.now)
        self._send(rank, out)
        if step != RUN:
            return bool(out)
        ok = ex.run_slice(0.0) if self.slices else ex.run_one()  # until=0.0: one pop, then it returns
        self._send(rank, proto.handle(TaskRan(ok, self.now)))
        return True

    # -- driving ---------------------------------------------------------------------
    def step(self) -> None:
        self.now += 0.001
        choice = self.rng.random()
        if choice < 0.5 and self.deliver_one():
            pass
        elif choice < 0.9:
            rank = self.rng.choice(sorted(self.workers))
            if not self.kernel_step(rank):
                self.deliver_one()
        elif self.groups and choice < 0.95:
            g = self.rng.choice(sorted(self.groups))
            self._send(g, self.groups[g].handle(Tick(self.now)))
        else:
            self._send(0, self.master.handle(Tick(self.now)))
        self.events += 1
        if self.events % self.validate_every == 0:
            self.check()

    def checkpoint(self) -> None:
        self._send(0, self.master.handle(CheckpointDue(self.now)))

    def preempt(self, signum=15) -> None:
        self._send(0, self.master.handle(Preempt(signum, self.now)))

    def run(self, max_events=200_000, on_event=None) -> None:
        """Until the master is done and every worker has left its loop."""
        while not (self.master.done and self.all_exited()):
            if on_event is not None:
                on_event(self)
            self.step()
            assert self.events < max_events, f"no end after {max_events} events: {self.master.workers}"
        while self.deliver_one():  # nothing may be left in flight: a stray message would reach the next call
            raise AssertionError("a message was still in flight after STOP")
        self.check()

    def all_exited(self) -> bool:
        return all(p.next_step(self.now)[0] == EXIT for p in self.workers.values())

    # -- checks ----------------------------------------------------------------------
    def check(self) -> None:
        self.master.validate()
        for group in self.groups.values():
            group.validate()
        for p in self.workers.values():
            p.validate()
        if self.mode == "map" and not self.master.aborting:
            self.check_exactly_once()

    def check_exactly_once(self) -> None:
        """Every task id is pending (somewhere) or finished (its result somewhere), exactly once."""
        pending, finished = [], []
        for e in self.master.pool.entries():
            pending += task_ids(e)
        for first, values in self.master.segments:
            finished += self.expand(first, len(values))
        for group in self.groups.values():
            for e in group.inner.pool.entries():
                pending += task_ids(e)
            for first, values in group.inner.segments:
                finished += self.expand(first, len(values))
        for q in self.pairs.values():
            for tag, body in q:
                if tag == Tag.TASKS:
                    for e in body[1]:
                        pending += task_ids(e)
                elif tag == Tag.REPORT:
                    rep: Report = body
                    for first, values in rep.results or ():
                        finished += self.expand(first, len(values))
                    if rep.handback is not None:
                        for e in rep.handback[0]:
                            pending += task_ids(e)
        for ex in self.executors.values():
            if ex.retired:
                continue
            for e in ex.queue.entries():
                pending += task_ids(e)
            for first, values in ex.segments:
                finished += self.expand(first, len(values))
        everything = pending + finished
        assert len(everything) == len(set(everything)), \
            f"a task is in two places: {sorted(i for i in set(everything) if everything.count(i) > 1)[:5]}"
        assert set(pending).isdisjoint(finished)

    def expand_all(self) -> list:
        """Every task id of the call in pre-order."""
        return preorder_ids(self.kernel, self.source)

    def expand(self, first, n) -> list:
        """The ids of a run of n map results from task ``first``: consecutive in pre-order."""
        if self._preorder is None:
            known = self.master.resumed_results + self.master.created  # tasks the master knows of
            if not (known > self.n_roots or any(ex.spawned or any(f.offset for f in ex.queue.frames())
                                                for ex in self.executors.values())):
                return [(first[0] + k,) for k in range(n)]  # no task spawned (yet): roots only
            self._preorder = preorder_ids(self.kernel, self.source)
            self._position = {tid: k for k, tid in enumerate(self._preorder)}
        at = self._position[tuple(first)]
        return self._preorder[at:at + n]

    def result(self):
        from hpcmicro.driver.call import ordered_results
        from hpcmicro.engine.combine import merge_parts

        if self.mode == "map":
            return ordered_results(self.master, self.n_roots)
        trees = [self.master.tree] + [group.inner.tree for group in self.groups.values()]
        parts = [(tree.shippable_lengths(), tree.blocks) for tree in trees]
        parts += [(ex.tree.shippable_lengths(), ex.tree.blocks) for ex in self.executors.values() if not ex.retired]
        return merge_parts(self.master.tree.op, self.n_roots, parts)


def check_cut(cut_state, n_roots, order=None):
    """A cut partitions the tasks it knows: none is both pending and finished.

    ``order``: every task id in pre-order (``preorder_ids``), for calls whose tasks spawn."""
    pending = []
    for a, b, _ in cut_state.pending_roots:
        pending += [(i,) for i in range(a, b)]
    pending += [tuple(i) for i, _, _ in cut_state.pending_spawned]
    finished = []
    position = {tid: k for k, tid in enumerate(order)} if order is not None else None
    for first, values in cut_state.segments:
        if position is None:
            finished += [(first[0] + k,) for k in range(len(values))]
        else:
            at = position[tuple(first)]
            finished += order[at:at + len(values)]
    both = set(pending) & set(finished)
    assert not both, f"tasks both pending and finished in a cut: {sorted(both)[:5]}"
    assert len(pending) == len(set(pending)) and len(finished) == len(set(finished))
    roots = {i for i in pending + finished if len(i) == 1}
    assert roots == {(i,) for i in range(n_roots)}, "a root task is missing from the cut"
    return pending, finished


def spawned(children_of):
    """Pending-entry helper for tests: a Spawned for each (id, payload)."""
    return [Spawned(i, p) for i, p in children_of]


def random_spawn_tree(rng, n_roots, max_children=3, max_depth=3):
    """{task_id: number of children}, ids as paths; roots at depth 0, no children past max_depth."""
    children = {}

    def grow(tid, depth):
        k = rng.randint(0, max_children) if depth < max_depth else 0
        children[tid] = k
        for c in range(k):
            grow(tid + (c,), depth + 1)

    for i in range(n_roots):
        grow((i,), 0)
    return children
