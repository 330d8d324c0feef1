"""A worker's task-time statistics take constant memory, and stay exact where they claim to be.

The executor is driven directly (no MPI, no threads) on a fake clock: each
task moves the clock to its precomputed end, so the executor measures exactly
the durations the test chose. They are multiples of 2**-30 s below 2**-6 s,
so float32 (the pending buffer) and float64 sums hold them exactly and count,
sum, minimum and maximum can be compared with ``==``.
"""

from __future__ import annotations

import operator
import sys

import numpy as np
import pytest

import hpcmicro as hm
from hpcmicro.engine import executor as executor_module
from hpcmicro.engine.executor import Executor
from hpcmicro.engine.tasks import RootRun
from hpcmicro.observe.metrics import FOLD_EVERY, PERCENTILE_FACTOR, TaskTimes, merge_summaries

UNIT = 2.0 ** -30  # seconds; every duration is k * UNIT with 1 <= k < 2**24


def chosen_durations(n: int, median_s: float, sigma: float, seed: int) -> np.ndarray:
    k = np.rint(np.random.default_rng(seed).lognormal(np.log(median_s / UNIT), sigma, n))
    return np.clip(k, 1, 2 ** 24 - 1) * UNIT


class FakeClock:
    """``now()`` for the executor; the kernel sets the time at which its task ends."""

    def __init__(self, durations: np.ndarray):
        self.ends = np.cumsum(durations).tolist()  # exact: multiples of UNIT far below 2**53 UNIT
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def kernel(self, payload: range) -> int:
        self.t = self.ends[payload.start]
        return 1


def give(ex: Executor, run: RootRun) -> None:
    push = getattr(ex.queue, "push_entries", None)  # the worker's queue as TASKS messages fill it
    if push is not None:
        push([run])
    else:
        ex.queue.push(run)


def run_executor(durations: np.ndarray, monkeypatch, first: int = 0, stop: int | None = None,
                 step: str = "run_one") -> Executor:
    """Run root tasks ``first .. stop-1`` of a reduction over ``len(durations)`` tasks on one executor.

    ``step``: the kernel thread's call, ``run_one`` (a task, or a block or batch of them) or ``run_slice``
    (tasks until a deadline, here about a thousand tasks of fake time).
    """
    n = len(durations)
    stop = n if stop is None else stop
    clock = FakeClock(durations)
    clock.t = clock.ends[first - 1] if first else 0.0
    monkeypatch.setattr(executor_module, "_now", clock.now)
    ex = Executor(clock.kernel, "reduce", hm.Range(n), n, op=operator.add)
    give(ex, RootRun(first, stop))
    slice_s = 1000 * float(np.median(durations))
    while ex.queue:
        assert ex.run_one() if step == "run_one" else ex.run_slice(clock.now() + slice_s)
        assert len(ex.times.durations) < FOLD_EVERY + max(ex.BLOCK_MAX, ex.BATCH_MAX)
    assert ex.done == stop - first and ex.error is None
    return ex


STEPS = ["run_one"] + (["run_slice"] if hasattr(Executor, "run_slice") else [])


def footprint(times: TaskTimes) -> int:
    """Bytes held by the statistics' containers (arrays and histogram included)."""
    return sum(sys.getsizeof(getattr(times, name)) for name in type(times).__slots__)


def check_summary(summary: dict, d: np.ndarray) -> None:
    assert summary["n"] == d.size
    assert summary["sum"] == d.sum()
    assert summary["min"] == d.min() and summary["max"] == d.max()
    assert sum(c for _, c in summary["bins"]) == d.size


def check_percentiles(merged: dict, d: np.ndarray) -> None:
    """The stated accuracy: within PERCENTILE_FACTOR of the order statistic of rank ceil(q n)."""
    for q, key in ((50, "p50"), (95, "p95")):
        exact = float(np.percentile(d, q, method="inverted_cdf"))
        assert exact / PERCENTILE_FACTOR * (1 - 1e-12) <= merged[key] <= exact * PERCENTILE_FACTOR * (1 + 1e-12), \
            (key, merged[key], exact)
        assert merged[key] == pytest.approx(float(np.percentile(d, q)), rel=PERCENTILE_FACTOR - 1 + 1e-3)


@pytest.mark.parametrize("step", STEPS)
def test_block_path_statistics_take_constant_memory_and_stay_exact(monkeypatch, step):
    """Short tasks (runs of root tasks in one loop): 10**4 and 10**6 tasks cost the same bytes."""
    sizes = {}
    for n in (10 ** 4, 10 ** 6):
        d = chosen_durations(n, 20e-6, 1.0, seed=n)
        ex = run_executor(d, monkeypatch, step=step)
        assert ex.stats.tasks == n
        summary = ex.times.summary()
        sizes[n] = footprint(ex.times)
        check_summary(summary, d)
        merged = merge_summaries([summary])
        assert merged["count"] == n and merged["min"] == d.min() and merged["max"] == d.max()
        assert merged["mean"] == pytest.approx(d.mean(), rel=1e-12)
        check_percentiles(merged, d)
    assert sizes[10 ** 6] <= sizes[10 ** 4], sizes


@pytest.mark.parametrize("step", STEPS)
def test_one_task_at_a_time_path_is_bounded_too(monkeypatch, step):
    """Tasks of milliseconds run one by one: the same bound, the same exactness."""
    sizes = {}
    for n in (2 * 10 ** 3, 6 * 10 ** 4):
        d = chosen_durations(n, 3e-3, 0.5, seed=n)
        ex = run_executor(d, monkeypatch, step=step)
        summary = ex.times.summary()
        sizes[n] = footprint(ex.times)
        check_summary(summary, d)
        check_percentiles(merge_summaries([summary]), d)
    assert sizes[6 * 10 ** 4] <= sizes[2 * 10 ** 3], sizes


def test_workers_summaries_merge_to_the_whole_distribution(monkeypatch):
    """Three workers, each with a share of the tasks: the merged statistics are those of all tasks."""
    n = 300_000
    d = chosen_durations(n, 50e-6, 2.0, seed=7)  # from ~1 ns to the 16 ms cap: many decades
    cuts = [0, 50_000, 210_000, n]
    summaries = [run_executor(d, monkeypatch, a, b).times.summary() for a, b in zip(cuts, cuts[1:])]
    for s, a, b in zip(summaries, cuts, cuts[1:]):
        check_summary(s, d[a:b])
    merged = merge_summaries(summaries)
    assert merged["count"] == n and merged["min"] == d.min() and merged["max"] == d.max()
    assert merged["mean"] == pytest.approx(d.mean(), rel=1e-12)
    check_percentiles(merged, d)


def test_percentiles_hold_their_accuracy_across_many_decades():
    """TaskTimes alone, durations from 1 ns to 10^4 s: every stated bound holds, nothing grows."""
    rng = np.random.default_rng(3)
    d = (10.0 ** rng.uniform(-9, 4, 200_000)).astype(np.float32).astype(np.float64)
    times = TaskTimes()
    for k, x in enumerate(d.tolist()):
        times.add(0.0, x, (k,))
        assert len(times.durations) < FOLD_EVERY
    s = times.summary()
    assert s["n"] == d.size and s["min"] == d.min() and s["max"] == d.max()
    assert s["sum"] == pytest.approx(d.sum(), rel=1e-12)
    merged = merge_summaries([s])
    check_percentiles(merged, d)
    empty = merge_summaries([TaskTimes().summary()])
    assert empty["count"] == 0 and empty["min"] == empty["max"] == 0.0


def test_a_view_of_the_pending_buffer_does_not_stop_a_fold():
    """Something holding numpy.frombuffer(times.durations) (as tests do) must not break a fold."""
    times = TaskTimes()
    for x in (1e-3, 2e-3, 4e-3):
        times.durations.append(x)
    view = np.frombuffer(times.durations, dtype=np.float32)
    s = times.summary()
    assert s["n"] == 3 and s["max"] == float(view.max()) and len(times.durations) == 0
