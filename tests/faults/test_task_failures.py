"""Retries, skipping failed tasks, and tasks that hang past task_timeout."""

import pytest

from tests.mpirun import run_scenario


def by_rank(run, n):
    assert run.returncode == 0, str(run)
    reps = {r["rank"]: r for r in run.reports()}
    assert sorted(reps) == list(range(n)), str(run)
    return reps


@pytest.mark.parametrize("policy", ["steal", "static"])
def test_kernel_failing_the_first_tries_succeeds_with_enough_retries(policy):
    reps = by_rank(run_scenario(3, "retry_and_skip", policy=policy, retries=2, fail_times=2), 3)
    for rep in reps.values():
        assert rep["map"] == [i * i for i in range(60)]
    assert reps[0]["retries"] == 2 * 12  # 12 flaky tasks, 2 failed tries each


def test_too_few_retries_raise_task_error_with_the_last_traceback():
    reps = by_rank(run_scenario(3, "retry_and_skip", policy="steal", retries=1, fail_times=2), 3)
    for rep in reps.values():
        assert "map" not in rep
        assert rep["error"]["task_id"][0] % 5 == 0
        assert "transient failure" in rep["error"]["text"] and "try 2" in rep["error"]["text"]


def test_on_error_skip_records_failures_and_finishes():
    reps = by_rank(run_scenario(3, "retry_and_skip", policy="steal", retries=1, fail_times=1, on_error="skip"), 3)
    bad = [i for i in range(60) if i % 7 == 3]
    for rep in reps.values():
        assert rep["map"] == [i * i for i in range(60)]  # one retry was enough for the flaky ones
        assert rep["skip_map"] == [None if i in bad else float(i) for i in range(60)]
        assert rep["skip_failed"] == [[i] for i in bad] and rep["skip_tb"]
        assert rep["skip_sum"] == sum(float(i) for i in range(60) if i not in bad)


# Hung tasks (task_timeout): tests/multirank/test_scenarios.py, on both transports, both policies, 1 and 3 workers.
