"""Pi by Monte Carlo: the kernel of jobs/pi.toml.

Task ``i`` throws ``samples`` points into the unit square with numbers drawn
from a counter-based stream keyed by ``(i, seed)`` (numpy's Philox): the points
of a task depend on its index alone, never on which rank runs it or in what
order, so the total hit count is exact and the same for any number of ranks,
any policy and any chunking. pi ~= 4 * hits / (tasks * samples): ``finalize``
prints that estimate after the run (the result file keeps the exact count).
"""

from __future__ import annotations

import numpy as np

__all__ = ["hits", "task_hits", "estimate", "finalize"]

_SLAB = 1 << 18  # points drawn at a time: bounds memory for large ``samples``


def task_hits(index: int, samples: int, seed: int = 0) -> int:
    """Points of task ``index`` that fall inside the quarter circle x^2 + y^2 < 1."""
    if samples < 0:
        raise ValueError(f"samples must be >= 0, got {samples}")
    rng = np.random.Generator(np.random.Philox(key=[int(index), int(seed)]))
    count, left = 0, int(samples)
    while left:
        m = min(left, _SLAB)
        xy = rng.random((m, 2))  # consecutive draws pair up: slab size does not change the points
        count += int(np.count_nonzero(np.einsum("ij,ij->i", xy, xy) < 1.0))
        left -= m
    return count


def hits(indices, samples: int = 100_000, seed: int = 0) -> int:
    """The kernel: a task index, or a range of them (an ``hm.Range`` payload), to a hit count."""
    if isinstance(indices, (int, np.integer)):
        indices = (indices,)
    return sum(task_hits(i, samples, seed) for i in indices)


def estimate(total_hits: int, tasks: int, samples: int) -> float:
    """Pi from the summed hit count of ``tasks`` tasks of ``samples`` points each."""
    return 4.0 * total_hits / (tasks * samples)


def finalize(total_hits: int, output: str, samples: int = 100_000, seed: int = 0) -> str:
    """job.finalize: the pi estimate, as a line for ``hpcmicro run`` to print.

    The number of task indices is not among the kernel's arguments; the result
    file records the spec's tasks, so it is read from there.
    """
    from hpcmicro.io.results import read_result

    attrs = read_result(output, value=False).attrs
    indices = attrs.tasks_value["n"] if attrs.tasks_source == "range" else len(attrs.tasks_value)
    points = indices * samples
    return f"pi ~ {estimate(total_hits, indices, samples):.5f} ({points} samples)"
