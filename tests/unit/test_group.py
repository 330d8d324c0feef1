"""Two-level scheduling (engine/group.py) under random schedules, against serial results and one master.

The harness (tests/unit/engine_harness.py) delivers messages in a random order
(each sender->receiver pair FIFO, as MPI), validates every machine after every
event, and checks that every task is pending or finished exactly once.
"""

import math
from operator import add

import pytest

import hpcmicro as hm
from hpcmicro.engine.events import Signalled, Tag
from hpcmicro.engine.group import (
    GROUPS_FROM_WORKERS, GroupMaster, GroupMessage, group_of_ranks, group_ranks, plan_groups, top_policy,
)
from hpcmicro.errors import InvalidCall
from hpcmicro.options import Options
from hpcmicro.engine.policies import StaticPolicy, StealPolicy
from hpcmicro.sim import make_workload, simulate
from tests.multirank.scenarios import fp_value, square, tree_node, tree_serial
from tests.unit.engine_harness import Cluster, check_cut
from tests.unit.test_engine import serial_tree_fold

ROOTS = [(v, 0) for v in range(2, 40)]


@pytest.mark.parametrize("n_workers,group_size", [(4, 2), (5, 2), (6, 3), (7, 7), (3, 1)])
@pytest.mark.parametrize("seed", range(3))
def test_spawn_tree_in_groups_equals_serial(n_workers, group_size, seed):
    c = Cluster(tree_node, ROOTS, StealPolicy(), n_workers, seed=seed, group_size=group_size)
    c.run()
    assert c.result() == tree_serial(ROOTS)
    assert c.master.finished == c.master.created == len(tree_serial(ROOTS))


@pytest.mark.parametrize("policy", [StealPolicy, StaticPolicy])
@pytest.mark.parametrize("seed", range(2))
def test_priorities_and_map_order_hold_in_groups(policy, seed):
    tasks = [hm.Task(i, priority=i % 3) for i in range(300)]
    c = Cluster(square, tasks, policy(), 6, seed=seed, group_size=2)
    c.run()
    assert c.result() == [i * i for i in range(300)]


def test_reduction_in_groups_is_bitwise_that_of_one_master_and_of_serial():
    expected = serial_tree_fold([fp_value(range(i * 7, min(1000, i * 7 + 7))) for i in range(143)])
    seen = set()
    for seed in range(4):
        for n, g in ((1, None), (4, 2), (6, 4), (8, 3)):
            c = Cluster(fp_value, hm.Range(1000, 7), StealPolicy(), n, mode="reduce", op=add, seed=seed, group_size=g)
            c.run()
            seen.add(c.result().hex())
    assert seen == {expected.hex()}


def binary(depth):
    """A full binary tree of depth 8 from one root: 511 nodes."""
    if depth < 8:
        hm.context().spawn(depth + 1)
        hm.context().spawn(depth + 1)
    return depth


@pytest.mark.parametrize("seed", range(3))
def test_work_crosses_groups_when_one_group_holds_it_all(seed):
    # One root: the top seeds one group; the others get work only by steals between groups.
    c = Cluster(binary, [0], StealPolicy(), 6, seed=seed, group_size=2)
    c.run()
    assert c.master.decision_counts.get("steal", 0) > 0, "no steal between groups"
    ran_in = {g: sum(c.executors[r].stats.tasks for r in group.members) for g, group in c.groups.items()}
    assert all(n > 0 for n in ran_in.values()), ran_in
    assert sum(ran_in.values()) == 511
    assert sorted(c.result()) == sorted(d for d in range(9) for _ in range(2 ** d))


def always_bad(x):
    if x == 13:
        raise ValueError("bad 13")
    return x


@pytest.mark.parametrize("seed", range(3))
def test_a_member_failure_aborts_every_group(seed):
    c = Cluster(always_bad, list(range(200)), StealPolicy(), 6, seed=seed, group_size=3)
    c.run()
    assert c.master.stop.kind == "error" and c.master.stop.info["task_id"] == (13,)
    assert all(p.stopped for p in c.workers.values())


@pytest.mark.parametrize("group_size", [2, 3])
@pytest.mark.parametrize("seed", range(3))
def test_checkpoint_cuts_under_groups_are_consistent_and_resume_exactly(group_size, seed):
    c = Cluster(tree_node, ROOTS, StealPolicy(), 6, seed=seed, group_size=group_size)
    c.run(on_event=lambda cl: cl.checkpoint() if cl.events % 40 == 39 else None)
    assert c.result() == tree_serial(ROOTS)
    assert len(c.cuts) >= 3
    for k, cut in enumerate(c.cuts[:: max(1, len(c.cuts) // 4)]):
        check_cut(cut.state, len(ROOTS), c.expand_all())
        # Resume on another layout (one master, or other groups): exactly the serial result.
        again = Cluster(tree_node, ROOTS, StealPolicy(), 4, seed=seed + k, resume=cut.state,
                        group_size=(None, 2, 3)[k % 3])
        again.run()
        assert again.result() == tree_serial(ROOTS)


@pytest.mark.parametrize("seed", range(3))
def test_reduction_under_groups_resumes_bitwise_from_any_cut(seed):
    expected = serial_tree_fold([fp_value(range(i * 3, min(300, i * 3 + 3))) for i in range(100)])
    c = Cluster(fp_value, hm.Range(300, 3), StealPolicy(), 6, mode="reduce", op=add, seed=seed, group_size=2)
    c.run(on_event=lambda cl: cl.checkpoint() if cl.events % 25 == 0 else None)
    assert c.result().hex() == expected.hex()
    assert c.cuts
    for k, cut in enumerate(c.cuts):
        again = Cluster(fp_value, hm.Range(300, 3), StealPolicy(), 5, mode="reduce", op=add, seed=seed,
                        resume=cut.state, group_size=(2, None)[k % 2])
        again.run()
        assert again.result().hex() == expected.hex()


@pytest.mark.parametrize("from_member", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_preemption_under_groups_ends_with_a_final_cut_that_resumes_exactly(from_member, seed):
    def events(cluster):
        if cluster.events == 30:
            cluster.checkpoint()
        if cluster.events == 31 + seed:  # during or just after the checkpoint round
            if from_member:  # SIGTERM reaches one member only: its group passes it up
                member = sorted(cluster.workers)[-1]
                cluster._send(member, cluster.workers[member].handle(Signalled(15)))
            else:
                cluster.preempt()

    c = Cluster(tree_node, ROOTS, StealPolicy(), 6, seed=seed, group_size=3)
    c.run(on_event=events)
    assert c.master.stop.kind == "preempted" and c.master.stop.info == 15
    assert c.cuts[-1].reason == "preempt"
    final = c.cuts[-1].state
    check_cut(final, len(ROOTS), c.expand_all())
    again = Cluster(tree_node, ROOTS, StealPolicy(), 4, seed=seed, resume=final, group_size=2)
    again.run()
    assert again.result() == tree_serial(ROOTS)


def test_a_group_master_refuses_a_retire_it_can_never_be_sent():
    c = Cluster(square, list(range(50)), StealPolicy(), 4, group_size=2)
    with pytest.raises(RuntimeError, match="unexpected message tag"):
        c.groups[1].handle(GroupMessage(0, Tag.RETIRE, None, 0.0))


def test_group_layout_and_bad_input():
    assert group_ranks(5, 2) == [(1, [4, 5]), (2, [6, 7]), (3, [8])]
    assert group_ranks(3, 8) == [(1, [2, 3, 4])]
    with pytest.raises(ValueError, match="group_size"):
        group_ranks(4, 0)
    with pytest.raises(ValueError, match="at least one member"):
        GroupMaster(1, 0, [], [], StealPolicy(), "map")
    g = GroupMaster(1, 0, [2, 3], [1.0, 1.0], StealPolicy(), "map")
    with pytest.raises(RuntimeError, match="not a member"):
        g.handle(GroupMessage(9, Tag.REPORT, None, 0.0))


def test_mpi_layouts_by_size_and_by_node():
    # Fixed size: blocks of a group master and its members, in rank order (neighbours share a node).
    assert plan_groups(7, 2) == [(1, [2, 3]), (4, [5, 6])]
    assert plan_groups(8, 2) == [(1, [2, 3]), (4, [5, 6, 7])]  # a master with no member joins the group before
    assert plan_groups(9, 3) == [(1, [2, 3, 4]), (5, [6, 7, 8])]
    assert plan_groups(2, 2) is None and plan_groups(9, None) is None
    # By node: the lowest rank on each node serves the others there; rank 0's node keeps its other ranks.
    node_of = [0, 0, 0, 3, 3, 3, 3, 7, 7]
    assert plan_groups(9, "node", node_of) == [(1, [2]), (3, [4, 5, 6]), (7, [8])]
    # Ranks 1 and 4 are alone on theirs: members of the group before them, or of the first one.
    assert plan_groups(5, "node", [0, 0, 2, 2, 4]) == [(2, [1, 3, 4])]
    # Auto: one master below the threshold; above, per node when there are several nodes, else ~sqrt(n).
    assert plan_groups(GROUPS_FROM_WORKERS, "auto") is None
    many = plan_groups(2001, "auto")
    assert len(many) == math.ceil(2000 / (45 + 1)) and {len(m) for _, m in many} == {45, 2000 - 43 * 46 - 1}
    assert sorted(r for g, m in many for r in [g, *m]) == list(range(1, 2001))
    nodes = [r // 128 for r in range(2048)]
    by_node = plan_groups(2048, "auto", nodes)
    assert len(by_node) == 16 and all(g % 128 in (0, 1) for g, _ in by_node)
    assert group_of_ranks([(1, [2, 3])]) == {1: 1, 2: 1, 3: 1}
    with pytest.raises(ValueError, match="needs every rank's node"):
        plan_groups(9, "node")


@pytest.mark.parametrize("value,expected", [("auto", "auto"), ("node", "node"), (4, 4), ("4", 4), (0, None),
                                            (None, None), ("off", None)])
def test_the_group_size_option(value, expected, monkeypatch):
    assert Options(group_size=value).group_size == expected
    monkeypatch.setenv("HPCMICRO_GROUP_SIZE", "3")
    assert Options().group_size == 3


@pytest.mark.parametrize("bad", [-1, "many", 2.5, True])
def test_a_bad_group_size_is_refused_by_name(bad):
    with pytest.raises(InvalidCall, match="group_size must be"):
        Options(group_size=bad)


def test_top_policy_takes_larger_chunks_and_leaves_the_given_policy_alone():
    pol = StealPolicy()
    top = top_policy(pol)
    assert top.batch_seconds > pol.batch_seconds == StealPolicy.batch_seconds
    assert top_policy(StaticPolicy()).name == "static"
    # A group of 50 workers is never sent fewer than MIN_CHUNK tasks per member while the pool has them.
    assert top.chunk(10_000, 0.001, 1e-4, capacity=50.0) == 50 * StealPolicy.MIN_CHUNK


@pytest.mark.parametrize("workload", ["uniform", "heavy", "uts"])
def test_simulated_groups_run_every_task_once(workload):
    w = make_workload(workload, 200, 0.002)
    flat = simulate(w, 24, validate=True)
    grouped = simulate(w, 24, group_size=5, validate=True)
    assert grouped.groups == 5
    assert grouped.tasks == flat.tasks
    assert grouped.value == flat.value  # the deterministic reduction: the same bits
    assert grouped.value == pytest.approx(grouped.work_s)


def test_one_master_stays_the_default_below_the_threshold():
    from hpcmicro.engine.group import GROUPS_FROM_WORKERS, auto_group_size

    assert auto_group_size(GROUPS_FROM_WORKERS - 1) is None
    assert auto_group_size(10_000) == 100
    assert auto_group_size(100_000) == 316


def test_results_after_a_members_snapshot_reach_the_top_before_the_group_says_idle():
    """Member 2 finishes its task after its snapshot; member 3 finished before its own. The group's cut
    has 3's result only; 2's (already counted done) must come before the top may take the group for
    idle, or the call could end without it (found by the checkpoint test under load)."""
    from hpcmicro.engine.events import Report, SendReport, SendSnapshot, Start, State
    from hpcmicro.engine.tasks import RootRun

    g = GroupMaster(1, 0, [2, 3], [1.0, 1.0], StealPolicy(), "map", n_roots=2)
    g.handle(Start(0.0))
    out = g.handle(GroupMessage(0, Tag.TASKS, (1, [RootRun(0, 2)]), 0.01))
    assert sorted(i.dest for i in out if i.tag == Tag.TASKS) == [2, 3]

    def rep(state, done=0, results=None, queued=0, snapshot=None):
        return Report(state, 1, done, 0, queued, 0.001, results, (), False, None, (), snapshot)

    for m in (2, 3):
        g.handle(GroupMessage(m, Tag.REPORT, rep(State.BUSY, queued=0), 0.02))
    out = g.handle(GroupMessage(0, Tag.SNAPSHOT, None, 0.03))
    assert sorted(i.dest for i in out if isinstance(i, SendSnapshot)) == [2, 3]
    g.handle(GroupMessage(2, Tag.REPORT, rep(State.BUSY, snapshot={"pending": [RootRun(0, 1)], "tree": None}),
                          0.04))
    g.handle(GroupMessage(2, Tag.REPORT, rep(State.IDLE, done=1, results=[((0,), ["r0"])]), 0.05))  # after its cut
    out = g.handle(GroupMessage(3, Tag.REPORT, rep(State.IDLE, done=1, results=[((1,), ["r1"])],
                                                   snapshot={"pending": [], "tree": None}), 0.06))
    reports = [i.report for i in out if isinstance(i, SendReport)]
    cut, after = reports[0], reports[-1]
    assert cut.snapshot is not None and cut.results == [((1,), ["r1"])]
    assert cut.state != State.IDLE  # 2's result is not in it
    assert after.snapshot is None and after.results == [((0,), ["r0"])] and after.state == State.IDLE
    g.validate()
