"""Multi-rank behaviour: each test runs its own mpiexec (2, 4 or 8 ranks,
oversubscribed on small machines) under a timeout and asserts on what the
ranks report."""

import math
import subprocess
import sys

import pytest

from tests.mpirun import SCENARIOS, run_command, run_scenario

POLICIES = ["steal", "static"]


def reports_by_rank(run, n, key=None):
    assert run.returncode == 0, str(run)
    reps = [r for r in run.reports() if key is None or key in r]
    assert sorted(r["rank"] for r in reps) == list(range(n)), str(run)
    return {r["rank"]: r for r in reps}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("n", [2, 4, 8])
def test_results_equal_serial(n, policy):
    reps = reports_by_rank(run_scenario(n, "serial_equal", policy=policy), n)
    for rank, rep in reps.items():
        assert all(rep["ok"].values()), (rank, rep["ok"])


def _fp_run(n, policy):
    if n == 1:  # the embedded default: plain python, no mpiexec
        run = run_command([sys.executable, str(SCENARIOS), "fp_reduce", f'{{"policy": "{policy}"}}'])
    else:
        run = run_scenario(n, "fp_reduce", policy=policy)
    reps = reports_by_rank(run, n)
    values = {(r["total"], r["array"], r["amin"]) for r in reps.values()}
    assert len(values) == 1, f"ranks of one run disagree: {values}"
    rep = reps[0]
    total = float.fromhex(rep["total"])
    assert math.isclose(total, rep["fsum"], rel_tol=1e-9), (total, rep["fsum"])
    return values.pop()


def test_reductions_bitwise_identical_across_ranks_and_policies():
    results = {(n, p): _fp_run(n, p) for n in (1, 2, 4, 8) for p in POLICIES}
    distinct = set(results.values())
    assert len(distinct) == 1, results


def test_skewed_workload_is_stolen_and_balanced():
    # The 6 slow tasks are the first ones, so all of them start in worker 1's seed.
    params = dict(policy="steal", n=60, slow=0.2, fast=0.01, n_slow=6)
    rep = run_scenario(4, "skewed", **params).report()
    assert rep["total"] == pytest.approx(6 * 0.2 + 54 * 0.01)
    assert rep["steals"] > 0, rep
    assert sum(w["tasks_given"] for w in rep["workers"]) > 0
    assert rep["workers"][0]["tasks"] < 10, "worker 1 kept its whole seed: nothing was stolen"
    assert rep["wall"] <= 1.5 * rep["ideal"], (rep["wall"], rep["ideal"])


def test_static_policy_does_not_balance_the_skewed_workload():
    # The control for the test above: the same workload without stealing.
    params = dict(policy="static", n=60, slow=0.2, fast=0.01, n_slow=6)
    rep = run_scenario(4, "skewed", **params).report()
    assert rep["steals"] == 0
    assert rep["wall"] > 1.5 * rep["ideal"], (rep["wall"], rep["ideal"])


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("n,preset", [(4, "SMALL_BIN"), (8, "SMALL_GEO")])
def test_tree_search_node_count_is_exact(n, preset, policy):
    rep = run_scenario(n, "tree_search", policy=policy, preset=preset).report()
    assert rep["count"] == rep["serial"]
    assert sum(rep["per_worker"]) == rep["serial"]
    if policy == "steal" and preset == "SMALL_BIN":
        assert rep["steals"] > 0  # one root: every other worker's work was stolen


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("n", [2, 4])
def test_kernel_error_raises_task_error_everywhere(n, policy):
    run = run_scenario(n, "kernel_error", policy=policy, bad=37, n=100, timeout=60)
    raised = reports_by_rank(run, n, key="raised")
    for rep in raised.values():
        assert rep["raised"] == "TaskError"
        assert rep["task_id"] == [37]
        assert rep["payload"] == "37"
        assert 1 <= rep["worker"] < n
        assert rep["host"]
        assert "ValueError: bad input 37" in rep["traceback"]
    after = reports_by_rank(run, n, key="after")
    assert {r["after"] for r in after.values()} == {sum(i * i for i in range(100))}


BAD_CASES = {
    "unpicklable": "payload of task (2,) cannot be pickled",
    "unknown_op": "unknown op 'average'",
    "bad_root": "root must be None or a rank",
    "not_iterable": "tasks must be a finite iterable",
    "not_callable": "kernel must be callable",
    "empty_reduce": "map_reduce over no tasks",
    "disagree_kernel": "ranks disagree on the call: kernel",
    "disagree_call": "ranks disagree on the call: call",
    "disagree_tasks": "ranks disagree on the call: tasks",
    "disagree_op": "ranks disagree on the call: op",
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_a_clear_error_on_every_rank(case):
    n = 3
    run = run_scenario(n, "bad_input", case=case, timeout=60)
    raised = reports_by_rank(run, n, key="raised")
    messages = {r["message"] for r in raised.values()}
    assert len(messages) == 1, messages  # the same error everywhere
    assert all(r["raised"] == "InvalidCall" for r in raised.values())
    assert BAD_CASES[case] in messages.pop()
    after = reports_by_rank(run, n, key="after")
    assert {r["after"] for r in after.values()} == {285}


@pytest.mark.parametrize("policy", POLICIES)
def test_noncommutative_op(policy):
    reps = reports_by_rank(run_scenario(4, "noncommutative", policy=policy), 4)
    assert all(r["ok"] for r in reps.values())


def test_root_option_delivers_to_one_rank():
    reps = reports_by_rank(run_scenario(4, "root_option"), 4)
    for rank, rep in reps.items():
        mine = rank == 3
        assert rep["has_map"] is mine and rep["has_reduce"] is mine and rep["has_array"] is mine
    assert reps[3]["map_ok"] and reps[3]["reduce_ok"]


def test_uncaught_error_on_one_rank_aborts_the_job_instead_of_hanging(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(
        "import hpcmicro as hm\n"
        "with hm.Runtime() as rt:\n"
        "    if rt.rank == 1:\n"
        "        raise KeyError('only on rank 1')\n"
        "    rt.map(abs, [1, 2, 3])\n"
    )
    from tests.mpirun import mpiexec

    run = run_command([mpiexec(), "-n", "3", sys.executable, str(script)], timeout=60)
    assert run.returncode != 0
    assert "only on rank 1" in run.stderr
