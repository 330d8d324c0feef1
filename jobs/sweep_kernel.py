"""A parameter sweep with heavy-tailed costs: the logistic map's Lyapunov exponent.

Task i evaluates r = r_min + i * (r_max - r_min) / (points - 1). How long it
iterates is heavy-tailed (Pareto, fixed seed): most points are cheap, a few are
50x the mean, as in sweeps where some parameters converge slowly.
"""

import functools
import math

import numpy as np

from hpcmicro.kernels.synthetic import heavy_tailed_durations


@functools.lru_cache(maxsize=4)
def _iterations(points, mean_iters, seed):
    return heavy_tailed_durations(points, float(mean_iters), seed=seed)


def lyapunov(i, points=2000, r_min=2.8, r_max=4.0, mean_iters=20000, seed=1):
    """[r, Lyapunov exponent, iterations] of point i; a range payload (hm.Range) gives a list of them."""
    if isinstance(i, range):
        out = [lyapunov(j, points, r_min, r_max, mean_iters, seed) for j in i]
        return out[0] if len(out) == 1 else out
    iters = max(100, int(_iterations(points, mean_iters, seed)[i]))
    r = r_min + i * (r_max - r_min) / (points - 1)
    x, total = 0.4, 0.0
    for _ in range(100):  # let the orbit settle
        x = r * x * (1 - x)
    for _ in range(iters):
        x = r * x * (1 - x)
        total += math.log(abs(r * (1 - 2 * x)) + 1e-300)
    return np.array([r, total / iters, iters])
