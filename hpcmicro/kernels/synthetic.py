"""Synthetic kernels for scheduling tests and benchmarks.

* ``noop``: measures pure runtime overhead per task.
* ``spin``: burns CPU for a given time (busy-wait, no sleep), a stand-in for
  real compute whose duration is known exactly.
* ``sleep_task``: waits without using CPU, for tests on oversubscribed
  machines where busy ranks would starve each other.
* ``heavy_tailed_durations``: reproducible Pareto task lengths, the kind of
  imbalance work stealing is for.
* ``order_sensitive_value``: floats whose plain sum depends on the order of
  addition, to check that reductions are deterministic.
"""

from __future__ import annotations

import math
import time

import numpy

__all__ = [
    "noop",
    "spin",
    "sleep_task",
    "heavy_tailed_durations",
    "order_sensitive_value",
    "DEFAULT_MAX_RATIO",
]

# heavy_tailed_durations never returns a duration above this many means.
DEFAULT_MAX_RATIO = 50.0


def noop(payload=None):
    """Do nothing; return None."""
    return None


def spin(seconds: float) -> float:
    """Busy-wait ``seconds`` of wall time (perf_counter), return ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return seconds


def sleep_task(seconds: float) -> float:
    """Sleep ``seconds`` (no CPU use), return ``seconds``."""
    time.sleep(seconds)
    return seconds


def heavy_tailed_durations(
    n: int, mean: float, seed: int, alpha: float = 1.5, max_ratio: float = DEFAULT_MAX_RATIO
) -> list[float]:
    """``n`` Pareto(``alpha``) durations whose average is exactly ``mean``.

    Samples come from ``numpy.random.default_rng(seed)`` (same list for the
    same arguments), are clipped at ``max_ratio * mean`` (default 50 means:
    a single task must not be the whole run) and scaled so that the clipped
    list still averages ``mean`` (up to rounding), so the total work of a
    benchmark is ``n * mean`` and its ideal time is known.
    """
    if n <= 0:
        return []
    if mean <= 0 or max_ratio <= 1:
        raise ValueError("need mean > 0 and max_ratio > 1")
    x = 1.0 + numpy.random.default_rng(seed).pareto(alpha, n)  # Pareto, x_m = 1
    cap = max_ratio * mean
    # Find the scale s with mean(min(s * x, cap)) == mean.  With x sorted in
    # decreasing order and the k largest clipped, s = (n*mean - k*cap) / sum(x[k:]);
    # take the smallest k for which the first unclipped sample fits under cap.
    xs = numpy.sort(x)[::-1]
    tail = numpy.cumsum(xs[::-1])[::-1]  # tail[k] = sum(xs[k:])
    k = numpy.arange(n)
    s = (n * mean - k * cap) / tail
    ok = s * xs <= cap
    s = s[int(numpy.argmax(ok))]  # ok[n-1] holds since cap > mean, so some k fits
    return numpy.minimum(s * x, cap).tolist()


def _mix64(i: int) -> int:
    # splitmix64 finalizer: a platform-independent hash of i.
    z = (i * 0x9E3779B97F4A7C15 + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def order_sensitive_value(i: int) -> float:
    """A float determined by ``i`` alone, for reduction-determinism tests.

    ``+-2**b + small``: the sign of the big term alternates with ``i`` and
    each pair ``(2k, 2k+1)`` shares ``b`` in [0, 40], so in index order the
    big terms cancel pair by pair; ``small`` has a random sign, a 53-bit
    mantissa and a magnitude in [2**-20, 2**21).  In any other order the
    small terms get added to running sums of very different sizes and lose
    different low bits: the float sum changes for about 60% of random
    orders of 4 consecutive values, 90% of 8 and nearly all of 16 or more.
    """
    h = _mix64(i)
    small = math.ldexp(1.0 + (h >> 12) / 2.0**52, (h & 0xFF) % 41 - 20)
    if (h >> 8) & 1:
        small = -small
    big = math.ldexp(1.0, _mix64((i // 2) ^ 0x5EED) % 41)  # same b for both of a pair
    return (big if i % 2 == 0 else -big) + small
