"""The simulator (hpcmicro.sim): the real master and workers on simulated time.

References are independent of the simulator: the workload's own sum of
durations, UTS's serial count, and schedules simple enough to work out by hand.
"""

from __future__ import annotations

import math

import pytest

from hpcmicro.kernels import uts
from hpcmicro.sim import Costs, make_workload, simulate

FIXED = Costs(master_event_s=5e-6, worker_task_s=3e-6)  # no live timing: runs repeat exactly


@pytest.mark.parametrize("name", ["uniform", "heavy", "mandelbrot"])
@pytest.mark.parametrize("workers", [1, 3, 16])
def test_every_task_runs_once_and_the_makespan_respects_the_bounds(name, workers):
    wl = make_workload(name, 240, 2e-3, seed=3)
    r = simulate(wl, workers, FIXED, validate=True)
    assert r.tasks == 240
    assert math.isclose(r.value, wl.total_work_s, rel_tol=1e-12)  # the sum reduction: nothing lost or doubled
    assert math.isclose(r.work_s, wl.total_work_s, rel_tol=1e-12)
    assert r.makespan_s >= max(wl.total_work_s / workers, max(wl.tasks))
    assert 0 < r.efficiency <= 1.0


def test_uts_node_count_equals_the_serial_walk():
    task_s = 1e-4
    r = simulate(make_workload("uts", 0, task_s, uts_params=uts.SMALL_GEO), 8, FIXED, validate=True)
    assert r.tasks == uts.serial_count(uts.SMALL_GEO)
    assert round(r.value / task_s) == r.tasks
    assert r.steals > 0  # one root: every other worker's work came by stealing


def test_one_worker_makespan_is_the_sum_of_task_and_engine_times():
    n, d = 200, 1e-3
    r = simulate(make_workload("uniform", n, d), 1, FIXED)
    # Tasks back to back, plus each task's engine cost, plus a few messages at the start and the end.
    assert n * (d + FIXED.worker_task_s) <= r.makespan_s <= n * (d + FIXED.worker_task_s) + 1e-3


def test_fixed_costs_give_the_same_run_twice():
    def run():
        r = simulate(make_workload("heavy", 500, 1e-3, seed=7), 12, FIXED)
        return r.makespan_s, r.messages, r.steals, r.master_events

    assert run() == run()


def test_a_slow_master_is_the_bottleneck():
    """Each report costs the master 1 ms: 100 workers of 1 ms tasks must wait on it."""
    slow = Costs(master_event_s=1e-3, worker_task_s=0.0)
    r = simulate(make_workload("uniform", 2000, 1e-3), 100, slow)
    assert r.master_utilization > 0.9
    assert r.makespan_s >= r.master_events * 1e-3  # it handled them one after another
    fast = simulate(make_workload("uniform", 2000, 1e-3), 100, FIXED)
    assert fast.efficiency > 2 * r.efficiency


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown workload 'nope'"):
        make_workload("nope", 10, 1e-3)
    with pytest.raises(ValueError, match="task_s"):
        make_workload("uniform", 10, 0.0)
    with pytest.raises(ValueError, match="workers"):
        simulate(make_workload("uniform", 10, 1e-3), 0)
