"""Task-time summaries against numpy's own histogram."""

import numpy as np
import pytest

from hpcmicro.observe.metrics import _EDGES, TaskTimes, merge_summaries


@pytest.mark.parametrize("n", [0, 1, 9, 5000])
def test_summary_bins_equal_numpy_histogram(n):
    rng = np.random.default_rng(n)
    times = TaskTimes()
    values = list(10.0 ** rng.uniform(-8, 5, n)) + list(_EDGES[::37])  # out of range both ways, and exact edges
    for v in values:
        times.durations.append(v)
    d = np.frombuffer(times.durations, dtype=np.float32)
    # float64 before clipping: clipped in float32, a duration under the first edge would stay under it
    counts, _ = np.histogram(np.clip(d.astype(np.float64), _EDGES[0], _EDGES[-1]), bins=_EDGES)
    s = times.summary()
    assert s["bins"] == [[int(i), int(counts[i])] for i in np.nonzero(counts)[0]]
    assert s["n"] == d.size and s["max"] == float(d.max())
    assert s["sum"] == pytest.approx(float(d.astype(np.float64).sum()), rel=1e-12)


def test_empty_summary_merges_to_zero():
    assert merge_summaries([TaskTimes().summary()])["count"] == 0
