"""Both protocol machines together, under random schedules (tests/unit/engine_harness.py).

Every event is followed by the machines' ``validate()`` and the global check
that each task is pending or finished exactly once; results are compared with
a serial computation.
"""

import functools
import math
import time

import pytest

import hpcmicro as hm
from hpcmicro.engine.combine import CombineError, PartialTree
from hpcmicro.engine.events import SnapshotAsked, StealAsked, TaskRan, Tick, WorkerReport
from hpcmicro.engine.policies import StaticPolicy, StealPolicy
from tests.multirank.scenarios import fp_value, square, tree_node, tree_serial
from tests.unit.engine_harness import Cluster, check_cut

POLICIES = [StealPolicy, StaticPolicy]


ROOTS = [(v, 0) for v in range(2, 40)]


def serial_tree_fold(values):
    """The combine tree's value for flat root tasks, computed by the tree code on one 'rank'."""
    tree = PartialTree(lambda a, b: a + b, len(values))
    for i, v in enumerate(values):
        tree.add_task((i,), v, 0)
    return tree.result


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("n_workers", [1, 2, 5])
@pytest.mark.parametrize("seed", range(4))
def test_spawn_tree_under_random_schedules_equals_serial(policy, n_workers, seed):
    c = Cluster(tree_node, ROOTS, policy(), n_workers, seed=seed)
    c.run()
    assert c.result() == tree_serial(ROOTS)
    assert c.master.finished == c.master.created == len(tree_serial(ROOTS))


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", range(3))
def test_list_with_priorities_equals_serial(policy, seed):
    tasks = [hm.Task(i, priority=i % 3) for i in range(300)]
    c = Cluster(square, tasks, policy(), 4, seed=seed)
    c.run()
    assert c.result() == [i * i for i in range(300)]


def test_reduction_is_bitwise_the_same_under_any_schedule():
    expected = serial_tree_fold([fp_value(range(i * 7, min(1000, i * 7 + 7))) for i in range(143)])
    add = lambda a, b: a + b  # noqa: E731
    seen = set()
    for seed in range(6):
        for n in (1, 3, 6):
            c = Cluster(fp_value, hm.Range(1000, 7), StealPolicy(), n, mode="reduce", op=add, seed=seed)
            c.run()
            seen.add(c.result().hex())
    assert seen == {expected.hex()}
    assert math.isclose(expected, math.fsum(fp_value(range(i, i + 1)) for i in range(1000)), rel_tol=1e-9)


def test_steals_happen_and_are_logged_with_their_reason():
    c = Cluster(tree_node, [(2, 0)], StealPolicy(), 3, seed=1)
    c.run()
    steals = [d for _, kind, d in c.master.decisions if kind == "steal"]
    assert steals and c.master.steals_brokered == len(steals) == c.master.decision_counts["steal"]
    assert all(d["thief"] != d["victim"] and d["asked"] in ("idle", "low") for d in steals)
    assert c.result() == tree_serial([(2, 0)])
    # What `hpcmicro report` prints of them: the counts, then who took what from whom, and why.
    from hpcmicro.observe.stats import format_decisions

    lines = format_decisions({"counts": c.master.decision_counts, "latest": list(c.master.decisions)}, show=1000)
    assert lines[0].startswith("decisions: ") and f"steal {len(steals)}" in lines[0]
    last = steals[-1]
    assert any(f"worker {last['thief']} ({last['asked']}) takes {last['tasks']} tasks from worker {last['victim']}"
               in line for line in lines[1:])


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", range(3))
def test_checkpoint_cuts_are_consistent_and_each_resumes_exactly(policy, seed):
    every = 40

    def maybe_checkpoint(cluster):
        if cluster.events % every == every - 1:
            cluster.checkpoint()

    c = Cluster(tree_node, ROOTS, policy(), 3, seed=seed)
    c.run(on_event=maybe_checkpoint)
    assert c.result() == tree_serial(ROOTS)
    assert len(c.cuts) >= 3
    for cut in c.cuts[:: max(1, len(c.cuts) // 4)]:
        check_cut(cut.state, len(ROOTS), c.expand_all())
        # Resume it on fewer workers (as after a lost worker): exactly the serial result.
        again = Cluster(tree_node, ROOTS, policy(), 2, seed=seed + 100, resume=cut.state)
        again.run()
        assert again.result() == tree_serial(ROOTS)


@pytest.mark.parametrize("seed", range(3))
def test_reduce_resumes_exactly_from_any_cut(seed):
    add = lambda a, b: a + b  # noqa: E731
    expected = serial_tree_fold([fp_value(range(i * 3, min(300, i * 3 + 3))) for i in range(100)])
    c = Cluster(fp_value, hm.Range(300, 3), StealPolicy(), 3, mode="reduce", op=add, seed=seed)
    c.run(on_event=lambda cl: cl.checkpoint() if cl.events % 25 == 0 else None)
    assert c.cuts
    for cut in c.cuts:
        again = Cluster(fp_value, hm.Range(300, 3), StealPolicy(), 1, mode="reduce", op=add, seed=seed,
                        resume=cut.state)
        again.run()
        assert again.result().hex() == expected.hex()


def count_and_sum(r):
    return (len(r), sum(r))


def refuse_large(a, b):
    """An op that fails once a block would cover 60 tasks: where it fails depends on who merges."""
    if a[0] + b[0] >= 60:
        raise ValueError("block too large")
    return (a[0] + b[0], a[1] + b[1])


def test_an_op_failing_where_snapshots_meet_on_the_master_ends_the_call_with_the_failure():
    where = []
    for seed in range(12):
        c = Cluster(count_and_sum, hm.Range(64, 1), StealPolicy(), 3, mode="reduce", op=refuse_large, seed=seed)
        c.run(on_event=lambda cl: cl.checkpoint() if cl.events % 10 == 0 else None)  # no exception escapes
        if c.master.stop.kind == "ok":  # nothing big met during the call: the final merge fails
            with pytest.raises(CombineError, match="block too large"):
                c.result()
            where.append("final")
            continue
        assert c.master.stop.kind == "error"
        error = c.master.error
        assert error["exc_type"] == "ValueError" and "block too large" in error["remote_traceback"]
        assert "the reduction of task" in error["payload_repr"]
        where.append("master" if error["rank"] == 0 else "worker")
    assert "master" in where  # the master's own merges were exercised


@pytest.mark.parametrize("seed", range(4))
def test_preemption_ends_with_a_final_cut_that_resumes_exactly(seed):
    state = {}

    def events(cluster):
        if cluster.events == 30:
            cluster.checkpoint()
        if cluster.events == 31 + seed:  # during or just after the checkpoint round
            cluster.preempt()
            state["at"] = cluster.events

    c = Cluster(tree_node, ROOTS, StealPolicy(), 3, seed=seed)
    c.run(on_event=events)
    assert c.master.stop.kind == "preempted"
    assert c.cuts[-1].reason == "preempt"
    final = c.cuts[-1].state
    check_cut(final, len(ROOTS), c.expand_all())
    again = Cluster(tree_node, ROOTS, StealPolicy(), 2, seed=seed, resume=final)
    again.run()
    assert again.result() == tree_serial(ROOTS)


def flaky(x, failures={}):  # noqa: B006  (remembers which tasks failed once)
    if x % 7 == 0 and x not in failures:
        failures[x] = True
        raise ValueError(f"flaky {x}")
    return x + 1


def test_retries_run_a_failed_task_again():
    flaky.__defaults__[0].clear()
    c = Cluster(flaky, list(range(50)), StealPolicy(), 3, retries=1)
    c.run()
    assert c.result() == [x + 1 for x in range(50)]
    assert sum(ex.stats.retries for ex in c.executors.values()) == len(range(0, 50, 7))


def always_bad(x):
    if x == 13:
        raise ValueError("bad 13")
    return x


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", range(3))
def test_kernel_error_aborts_the_call_under_checkpoint_rounds(policy, seed):
    c = Cluster(always_bad, list(range(200)), policy(), 3, seed=seed)
    c.run(on_event=lambda cl: cl.checkpoint() if cl.events % 7 == 0 else None)
    assert c.master.stop.kind == "error" and c.master.stop.info["task_id"] == (13,)


def test_skip_records_the_failure_and_goes_on():
    c = Cluster(always_bad, list(range(40)), StealPolicy(), 2, on_error="skip")
    c.run()
    assert c.result() == [None if x == 13 else x for x in range(40)]
    assert [t for t, _ in c.master.failed] == [(13,)]


class _HangOnce:
    """Task 5 'hangs': while it runs, the mailbox's tick notices the overrun, and the
    master's answer (retire) reaches the worker before the kernel returns."""

    def __init__(self):
        self.cluster = None
        self.hung_on = None

    def __call__(self, x):
        c = self.cluster
        if x == 5 and self.hung_on is None:
            rank = hm.context().worker
            self.hung_on = rank
            proto = c.workers[rank]
            # The mailbox sees the overrun (a worker's time is the executor's clock: perf_counter).
            c._send(rank, proto.handle(Tick(time.perf_counter() + 100.0)))
            rep = c.pairs[(rank, 0)].pop()[1]
            assert rep.hung
            c._send(0, c.master.handle(WorkerReport(rank, rep, c.now)))
            retire = c.pairs[(0, rank)].pop()
            from hpcmicro.engine.events import worker_event

            c._send(rank, proto.handle(worker_event(0, *retire)))  # RETIRE: hand back everything
            assert c.executors[rank].retired
        return x * 10


@pytest.mark.parametrize("policy", POLICIES)
def test_hung_task_is_handed_back_and_its_late_result_dropped(policy):
    kernel = _HangOnce()
    c = Cluster(kernel, list(range(40)), policy(), 3, seed=2, task_timeout=1.0)
    kernel.cluster = c
    c.run()
    assert kernel.hung_on is not None and c.master.workers[kernel.hung_on].retired
    assert c.result() == [x * 10 for x in range(40)]  # task 5 counted once, by another worker


def test_worker_answers_a_steal_with_the_back_half_and_a_snapshot_with_its_queue():
    c = Cluster(square, list(range(20)), StealPolicy(), 1)
    c.deliver_one()  # the seed: all 20 tasks (a lone worker)
    proto, ex = c.workers[1], c.executors[1]
    assert len(ex.queue) == 20
    (answer,) = proto.handle(StealAsked(7))
    assert answer.dest == 7 and [(e.start, e.stop) for e in answer.entries] == [(10, 20)]
    (rep,) = proto.handle(SnapshotAsked())
    assert [(e.start, e.stop) for e in rep.report.snapshot["pending"]] == [(0, 10)]
    ex.run_one()
    proto.handle(TaskRan(True, 1.0))
    proto.validate()
    assert len(ex.queue) == 9


def test_an_aborted_worker_gives_nothing_to_thieves():
    c = Cluster(square, list(range(20)), StealPolicy(), 1)
    c.deliver_one()
    proto = c.workers[1]
    from hpcmicro.engine.events import AbortAsked

    proto.handle(AbortAsked())
    (answer,) = proto.handle(StealAsked(2))
    assert answer.entries == [] and not c.executors[1].queue


def test_partial_kernel_in_harness():
    kernel = functools.partial(pow, 2)
    c = Cluster(kernel, list(range(10)), StealPolicy(), 2)
    c.run()
    assert c.result() == [2 ** x for x in range(10)]
