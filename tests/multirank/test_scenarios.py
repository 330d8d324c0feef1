"""Multi-rank behaviour on both transports, from one test body.

``ScenarioTests`` holds the tests; the mixins in tests/mpirun.py say how a
scenario runs: ``MPIRanks`` starts its own mpiexec (2, 4 or 8 ranks,
oversubscribed on small machines), ``InProcess`` runs the same script as plain
python with N-1 in-process workers. Either way under a timeout, asserting on
what the callers report.
"""

import math
import sys

import pytest

from tests.mpirun import SCENARIOS, InProcess, MPIRanks, mpiexec, run_command

POLICIES = ["steal", "static"]


class ScenarioTests:
    def reports_by_rank(self, run, n, key=None):
        assert run.returncode == 0, str(run)
        reps = [r for r in run.reports() if key is None or key in r]
        assert sorted(r["rank"] for r in reps) == self.callers(n), str(run)
        return {r["rank"]: r for r in reps}

    @pytest.mark.parametrize("policy", POLICIES)
    @pytest.mark.parametrize("n", [2, 4, 8])
    def test_results_equal_serial(self, n, policy):
        reps = self.reports_by_rank(self.run(n, "serial_equal", policy=policy), n)
        for rank, rep in reps.items():
            assert all(rep["ok"].values()), (rank, rep["ok"])

    def _fp_run(self, n, policy):
        if n == 1:  # the embedded default: plain python, no mpiexec, one worker
            run = run_command([sys.executable, str(SCENARIOS), "fp_reduce", f'{{"policy": "{policy}"}}'],
                              env={"HPCMICRO_INPROCESS_WORKERS": "1"})
            reps = {r["rank"]: r for r in run.reports()}
        else:
            reps = self.reports_by_rank(self.run(n, "fp_reduce", policy=policy), n)
        values = {(r["total"], r["array"], r["amin"]) for r in reps.values()}
        assert len(values) == 1, f"ranks of one run disagree: {values}"
        rep = reps[0]
        total = float.fromhex(rep["total"])
        assert math.isclose(total, rep["fsum"], rel_tol=1e-9), (total, rep["fsum"])
        return values.pop()

    def test_reductions_bitwise_identical_across_ranks_and_policies(self):
        results = {(n, p): self._fp_run(n, p) for n in (1, 2, 4, 8) for p in POLICIES}
        distinct = set(results.values())
        assert len(distinct) == 1, results

    def test_skewed_workload_is_stolen_and_balanced(self):
        # The 6 slow tasks are the first ones, so all of them start in worker 1's seed.
        params = dict(policy="steal", n=60, slow=0.2, fast=0.01, n_slow=6)
        rep = self.run(4, "skewed", **params).report()
        assert rep["total"] == pytest.approx(6 * 0.2 + 54 * 0.01)
        assert rep["steals"] > 0, rep
        assert sum(w["tasks_given"] for w in rep["workers"]) > 0
        assert rep["workers"][0]["tasks"] < 10, "worker 1 kept its whole seed: nothing was stolen"
        assert rep["wall"] <= 1.5 * rep["ideal"], (rep["wall"], rep["ideal"])

    def test_static_policy_does_not_balance_the_skewed_workload(self):
        # The control for the test above: the same workload without stealing.
        params = dict(policy="static", n=60, slow=0.2, fast=0.01, n_slow=6)
        rep = self.run(4, "skewed", **params).report()
        assert rep["steals"] == 0
        assert rep["wall"] > 1.5 * rep["ideal"], (rep["wall"], rep["ideal"])

    @pytest.mark.parametrize("policy", POLICIES)
    @pytest.mark.parametrize("n,preset", [(4, "SMALL_BIN"), (8, "SMALL_GEO")])
    def test_tree_search_node_count_is_exact(self, n, preset, policy):
        rep = self.run(n, "tree_search", policy=policy, preset=preset).report()
        assert rep["count"] == rep["serial"]
        assert sum(rep["per_worker"]) == rep["serial"] and len(rep["per_worker"]) == n - 1
        if policy == "steal" and preset == "SMALL_BIN":
            assert rep["steals"] > 0  # one root: every other worker's work was stolen

    @pytest.mark.parametrize("policy", POLICIES)
    @pytest.mark.parametrize("n", [2, 4])
    def test_kernel_error_raises_task_error_everywhere(self, n, policy):
        run = self.run(n, "kernel_error", policy=policy, bad=37, n=100, timeout=60)
        raised = self.reports_by_rank(run, n, key="raised")
        for rep in raised.values():
            assert rep["raised"] == "TaskError"
            assert rep["task_id"] == [37]
            assert rep["payload"] == "37"
            assert rep["worker"] in self.task_ranks(n)
            assert rep["host"]
            assert "ValueError: bad input 37" in rep["traceback"]
        after = self.reports_by_rank(run, n, key="after")
        assert {r["after"] for r in after.values()} == {sum(i * i for i in range(100))}

    @pytest.mark.parametrize("policy", POLICIES)
    def test_noncommutative_op(self, policy):
        reps = self.reports_by_rank(self.run(4, "noncommutative", policy=policy), 4)
        assert all(r["ok"] for r in reps.values())

    @pytest.mark.parametrize("policy", POLICIES)
    @pytest.mark.parametrize("n", [2, 4])
    def test_hung_task_finishes_exactly_once(self, tmp_path, policy, n):
        # One worker (n=2) has nobody to hand the hung task to: the call waits for it.
        alone = n == 2
        hang = 2.5 if alone else 6.0
        run = self.run(n, "hung_task", policy=policy, marker_dir=str(tmp_path), hang=hang, task_timeout=0.5,
                       timeout=90)
        reps = self.reports_by_rank(run, n)
        assert (tmp_path / "hung").exists()  # the hang did happen
        for rep in reps.values():
            assert rep["total"] == rep["check"]  # bitwise the fault-free value
            assert rep["map_ok"]
            if not (alone and self.transport == "inproc"):  # a lone in-process worker runs in the caller's thread:
                assert sum(rep["hung"]) == 1  # one task overran its timeout      nobody watches it (see architecture)
            assert rep["tasks_run"] == 40  # the late result of a handed-over try was not counted
        if alone:
            assert reps[0]["wall"] >= hang, reps[0]["wall"]
        else:  # the call returned without waiting for the hung kernel
            assert reps[0]["wall"] < hang / 2, reps[0]["wall"]

    @pytest.mark.parametrize("policy", POLICIES)
    def test_a_kernel_calling_the_runtime_is_a_task_error_everywhere(self, policy):
        run = self.run(3, "nested_call", policy=policy, timeout=60)
        for rep in self.reports_by_rank(run, 3, key="raised").values():
            assert rep["raised"] == "TaskError" and "a call is already running" in rep["traceback"]
        assert {r["after"] for r in self.reports_by_rank(run, 3, key="after").values()} == {285}

    @pytest.mark.parametrize("policy", POLICIES)
    def test_a_failing_reduction_is_a_task_error_everywhere(self, policy):
        run = self.run(3, "bad_reduction", policy=policy, timeout=60)
        for rep in self.reports_by_rank(run, 3, key="raised").values():
            assert rep["raised"] == "TaskError" and rep["exc_type"] == "TypeError"
            assert "combining the results of task" in rep["traceback"]
        assert {r["after"] for r in self.reports_by_rank(run, 3, key="after").values()} == {285}

    def test_sys_exit_in_a_kernel_is_a_task_error_everywhere(self):
        run = self.run(3, "kernel_exit", timeout=60)
        for rep in self.reports_by_rank(run, 3, key="raised").values():
            assert (rep["raised"], rep["task_id"], rep["exc_type"]) == ("TaskError", [7], "SystemExit")

    @pytest.mark.parametrize("policy", POLICIES)
    def test_a_kernel_error_during_checkpoint_rounds_ends_the_call(self, tmp_path, policy):
        run = self.run(3, "error_in_checkpoint_round", policy=policy, checkpoint=str(tmp_path / "c.h5"), timeout=60)
        for rep in self.reports_by_rank(run, 3, key="raised").values():
            assert rep["raised"] == "TaskError" and rep["task_id"] == [5]


class TestMPI(MPIRanks, ScenarioTests):
    """Every rank a process, under mpiexec."""

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
    def test_bad_input_is_a_clear_error_on_every_rank(self, case):
        n = 3
        run = self.run(n, "bad_input", case=case, timeout=60)
        raised = self.reports_by_rank(run, n, key="raised")
        messages = {r["message"] for r in raised.values()}
        assert len(messages) == 1, messages  # the same error everywhere
        assert all(r["raised"] == "InvalidCall" for r in raised.values())
        assert self.BAD_CASES[case] in messages.pop()
        after = self.reports_by_rank(run, n, key="after")
        assert {r["after"] for r in after.values()} == {285}

    @pytest.mark.parametrize("policy", POLICIES)
    def test_an_unpicklable_result_is_a_task_error_everywhere(self, policy):
        run = self.run(3, "unpicklable_result", policy=policy, timeout=60)
        for rep in self.reports_by_rank(run, 3, key="raised").values():
            assert rep["raised"] == "TaskError" and rep["task_id"] == [3]
            assert "cannot be pickled" in rep["traceback"] and "lock" in rep["traceback"]
        assert {r["after"] for r in self.reports_by_rank(run, 3, key="after").values()} == {285}

    def test_a_failed_final_checkpoint_write_raises_on_every_rank(self, tmp_path):
        (tmp_path / "ck").mkdir()
        run = self.run(3, "final_write_fails", folder=str(tmp_path / "ck"), timeout=60)
        for rep in self.reports_by_rank(run, 3, key="raised").values():
            assert rep["raised"] == "CheckpointError", str(run)
            assert "cannot write the checkpoint" in rep["message"] and "result is lost" in rep["message"]

    def test_root_option_delivers_to_one_rank(self):
        reps = self.reports_by_rank(self.run(4, "root_option"), 4)
        for rank, rep in reps.items():
            mine = rank == 3
            assert rep["has_map"] is mine and rep["has_reduce"] is mine and rep["has_array"] is mine
        assert reps[3]["map_ok"] and reps[3]["reduce_ok"]

    def test_uncaught_error_on_one_rank_aborts_the_job_instead_of_hanging(self, tmp_path):
        script = tmp_path / "crash.py"
        script.write_text(
            "import hpcmicro as hm\n"
            "with hm.Runtime() as rt:\n"
            "    if rt.rank == 1:\n"
            "        raise KeyError('only on rank 1')\n"
            "    rt.map(abs, [1, 2, 3])\n"
        )
        run = run_command([mpiexec(), "-n", "3", sys.executable, str(script)], timeout=60)
        assert run.returncode != 0
        assert "only on rank 1" in run.stderr


class TestInProcess(InProcess, ScenarioTests):
    """One process: the master and N-1 workers on threads, over the in-process transport."""

    BAD_CASES = {k: v for k, v in TestMPI.BAD_CASES.items() if not k.startswith("disagree")}

    @pytest.mark.parametrize("case", sorted(BAD_CASES))
    def test_bad_input_is_a_clear_error(self, case):
        run = self.run(3, "bad_input", case=case, timeout=60)
        (rep,) = [r for r in run.reports() if "raised" in r]
        assert rep["raised"] == "InvalidCall" and self.BAD_CASES[case] in rep["message"], str(run)
        assert [r["after"] for r in run.reports() if "after" in r] == [285]

