"""Runs of siblings: short spawned tasks popped and run back to back, their results recorded together.

``Executor.run_slice`` takes the next tasks of the top group in one pop while
tasks are short (one lock section per run, not per task). A steal, a snapshot
or a checkpoint may come in the middle of a run (the mailbox thread), a task
of the run may spawn (the run stops there, the rest goes back below its
children) or fail (its retries, then the rest). The harness delivers messages
from inside the kernel to put those events mid-run; every result is checked
against a serial reference: pre-order for ``map``, the combine tree fed task
by task for a non-associative, non-commutative ``reduce``.
"""

import random

import pytest

import hpcmicro as hm
from hpcmicro.engine.combine import PartialTree
from hpcmicro.engine.executor import Executor
from hpcmicro.engine.frames import Frame, LocalFold, root_frame
from hpcmicro.engine.policies import StaticPolicy, StealPolicy
from hpcmicro.engine.tasks import RootRun
from tests.unit.engine_harness import Cluster, random_spawn_tree

POLICIES = [StealPolicy, StaticPolicy]


def shape(a, b):
    """Non-associative and non-commutative: the string is the combine tree's shape."""
    return f"({a} {b})"


def name(tid) -> str:
    return "t" + ".".join(map(str, tid))


class TreeKernel:
    """Task ``tid`` spawns ``kids[tid]`` children (payload: their ids) and returns its name."""

    def __init__(self, kids, fail_once=()):
        self.kids = kids
        self.fail_once = set(fail_once)  # these tasks raise on their first try

    def __call__(self, tid):
        if tid in self.fail_once:
            self.fail_once.discard(tid)
            hm.context().spawn(tid + (99,))  # a failed try's children must vanish with it
            raise ValueError(f"first try of {tid}")
        ctx = hm.context()
        for c in range(self.kids[tid]):
            ctx.spawn(tid + (c,))
        return name(tid)


def bushy_tree(rng, n_roots):
    """Wide groups (up to 8 siblings, most of them leaves), as in UTS: long runs, broken by spawners."""
    return random_spawn_tree(rng, n_roots, max_children=8, max_depth=rng.randint(2, 4))


def reference(kids, n_roots):
    tree = PartialTree(shape, n_roots)
    for tid in sorted(kids):
        tree.add_task(tid, name(tid), kids[tid])
    assert tree.complete
    return tree.result


def preorder(kids):
    return [name(t) for t in sorted(kids)]


@pytest.mark.parametrize("seed", range(20))
def test_complete_run_folds_like_complete_one_at_a_time(seed):
    """LocalFold.complete_run over runs of leaves, among spawners and splits, equals the combine tree."""
    rng = random.Random(seed)
    n_roots = rng.randint(1, 5)
    kids = random_spawn_tree(rng, n_roots, max_children=9, max_depth=3)
    tree = PartialTree(shape, n_roots)
    fold = LocalFold(tree)
    groups = [(root_frame(), [(i,) for i in range(n_roots)])]  # a stack of (frame, ids not run yet)
    live: list = []
    while groups:
        frame, ids = groups.pop()
        leaves = []
        while ids and not kids[ids[0]]:
            leaves.append(ids.pop(0))
        if leaves:
            fold.complete_run(frame, leaves[0][-1], [name(t) for t in leaves])
        if ids:  # a spawner: the rest below its children
            tid = ids.pop(0)
            if ids:
                groups.append((frame, ids))
            child = Frame(frame, tid[-1], 1 + kids[tid], name(tid))
            live.append(child)
            groups.append((child, [tid + (c,) for c in range(kids[tid])]))
        live = [f for f in live if f.acc is not None]
        if live and rng.random() < 0.2:  # a steal or snapshot: this frame folds by id from now on
            fold.split(rng.choice(live))
    assert tree.complete
    assert tree.result == reference(kids, n_roots)


def one_executor(kernel, n_roots, mode, retries=0):
    ex = Executor(kernel, mode, None, n_roots, op=shape if mode == "reduce" else None, retries=retries,
                  retry_backoff_s=0.0)
    ex.queue.push_entries([RootRun(0, n_roots, 0, [(i,) for i in range(n_roots)])])
    return ex


def test_one_executor_runs_siblings_in_runs_and_folds_like_the_serial_tree():
    rng = random.Random(7)
    kids = bushy_tree(rng, 3)
    ex = one_executor(TreeKernel(kids), 3, "reduce")
    pops = 0
    while ex.queue:
        ex.run_slice(0.0)  # one pop each
        pops += 1
    assert ex.done == len(kids)
    assert ex.tree.result == reference(kids, 3)
    assert pops < 0.7 * len(kids)  # runs did happen: fewer pops than tasks


@pytest.mark.parametrize("mode", ["map", "reduce"])
def test_a_failing_task_in_a_run_is_retried_and_its_siblings_still_run_once(mode):
    rng = random.Random(3)
    kids = bushy_tree(rng, 4)
    leaves = [t for t in sorted(kids) if not kids[t] and len(t) > 1]
    spawners = [t for t in sorted(kids) if kids[t] and len(t) > 1]
    failing = leaves[::5] + spawners[::3]
    ex = one_executor(TreeKernel(kids, failing), 4, mode, retries=1)
    while ex.queue:
        assert ex.run_slice(1e18)
    assert ex.stats.retries == len(failing)
    assert ex.done == len(kids)
    if mode == "reduce":
        assert ex.tree.result == reference(kids, 4)
    else:
        values = [v for _, run in ex.take_results() for v in run]
        assert values == preorder(kids)


def test_a_failure_in_a_run_without_retries_ends_the_call_naming_the_task():
    rng = random.Random(5)
    kids = bushy_tree(rng, 2)
    bad = [t for t in sorted(kids) if not kids[t] and len(t) > 1][3]
    ex = one_executor(TreeKernel(kids, [bad]), 2, "reduce")
    while ex.queue and ex.run_slice(1e18):
        pass
    assert ex.error is not None and ex.error["task_id"] == bad
    assert "first try of" in ex.error["remote_traceback"]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("n_workers", [1, 2, 4])
@pytest.mark.parametrize("seed", range(3))
def test_reduce_under_steals_and_snapshots_mid_run_is_bitwise_the_serial_tree(policy, n_workers, seed):
    rng = random.Random(100 + seed)
    kids = bushy_tree(rng, 6)
    c = Cluster(TreeKernel(kids), [(i,) for i in range(6)], policy(), n_workers, mode="reduce", op=shape,
                seed=seed, slices=True, meanwhile=0.3)
    c.run(on_event=lambda cl: cl.checkpoint() if cl.events % 40 == 0 else None)
    assert c.master.stop.kind == "ok"
    assert c.result() == reference(kids, 6)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", range(3))
def test_map_under_steals_mid_run_keeps_preorder_and_runs_each_task_once(policy, seed):
    rng = random.Random(200 + seed)
    kids = bushy_tree(rng, 5)
    c = Cluster(TreeKernel(kids), [(i,) for i in range(5)], policy(), 3, seed=seed, slices=True, meanwhile=0.3)
    c.run()  # the harness checks after every event that each task is pending or finished exactly once
    assert c.result() == preorder(kids)
    assert c.master.finished == c.master.created == len(kids)


@pytest.mark.parametrize("seed", range(3))
def test_cuts_taken_mid_run_resume_exactly(seed):
    rng = random.Random(300 + seed)
    kids = bushy_tree(rng, 4)
    roots = [(i,) for i in range(4)]
    c = Cluster(TreeKernel(kids), roots, StealPolicy(), 3, mode="reduce", op=shape, seed=seed, slices=True,
                meanwhile=0.3)
    c.run(on_event=lambda cl: cl.checkpoint() if cl.events % 15 == 0 else None)
    assert c.cuts
    expected = reference(kids, 4)
    for cut in c.cuts:
        again = Cluster(TreeKernel(kids), roots, StealPolicy(), 2, mode="reduce", op=shape, seed=seed,
                        resume=cut.state, slices=True, meanwhile=0.3)
        again.run()
        assert again.result() == expected
