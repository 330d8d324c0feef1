"""Simulated workloads: tasks whose durations are modelled, run by real (near-instant) kernels.

A kernel does no real work: it adds its task's modelled duration to
``METER.spent`` (the simulator charges that much simulated time for the
``Executor.run_one`` that ran it) and returns it, so the call's sum reduction
is the total work: a check that every task ran exactly once.

- ``uniform``: every task lasts ``task_s``;
- ``heavy``: Pareto(alpha=1.5) durations of mean ``task_s``, capped at 50x
  (``kernels.synthetic.heavy_tailed_durations``, as benchmarks/bench_scaling.py);
- ``mandelbrot``: one task per image row, lasting in proportion to the row's
  escape iterations (a 3:2 view of the set), scaled to mean ``task_s``;
- ``uts``: a UTS tree (``kernels.uts``) whose every node spawns its children
  and lasts ``task_s``; the tree is a parameter (``uts_params``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..engine.context import context as _context
from ..kernels import uts as _uts
from ..kernels.synthetic import heavy_tailed_durations

__all__ = ["METER", "Workload", "WORKLOADS", "make_workload", "mandelbrot_durations"]


class _Meter:
    """The modelled seconds the kernels run since the simulator last reset it (one thread)."""

    __slots__ = ("spent",)

    def __init__(self):
        self.spent = 0.0


METER = _Meter()


@dataclass
class Workload:
    name: str
    tasks: list  # the root payloads
    kernel: Callable[[Any], float]
    description: str
    total_work_s: float | None  # known in advance (None for a tree: its size is found by running it)


def _charge(duration: float) -> float:
    METER.spent += duration
    return duration


def mandelbrot_durations(n: int, mean_s: float, width: int = 96, max_iter: int = 256) -> list:
    """Per-row costs of an n-row Mandelbrot image (escape iterations summed over the row), mean ``mean_s``."""
    y = np.linspace(-1.0, 1.0, n)[:, None]
    x = np.linspace(-2.0, 1.0, width)[None, :]
    c = x + 1j * y
    z = np.zeros_like(c)
    iters = np.zeros(c.shape, np.int64)
    alive = np.ones(c.shape, bool)
    for _ in range(max_iter):
        z[alive] = z[alive] * z[alive] + c[alive]
        alive &= np.abs(z) <= 2.0
        iters += alive
    rows = iters.sum(axis=1).astype(np.float64) + width  # every pixel costs at least one step
    return list(rows * (mean_s / rows.mean()))


def _uts_kernel(params, task_s: float):
    children = _uts.children

    def node(payload):
        kids = children(params, payload)
        if kids:
            _context().spawn_many(kids)
        METER.spent += task_s
        return task_s

    return node


def make_workload(name: str, n_tasks: int, task_s: float, seed: int = 1, uts_params=None) -> Workload:
    if task_s <= 0:
        raise ValueError(f"task_s must be > 0, got {task_s!r}")
    if name == "uts":
        params = uts_params if uts_params is not None else _uts.SMALL_GEO
        return Workload("uts", [_uts.root(params)], _uts_kernel(params, task_s),
                        f"UTS tree {params}, every node {task_s * 1e3:g} ms", None)
    if n_tasks < 1:
        raise ValueError(f"n_tasks must be >= 1, got {n_tasks!r}")
    if name == "uniform":
        durations = [task_s] * n_tasks
        what = f"{n_tasks} tasks of {task_s * 1e3:g} ms"
    elif name == "heavy":
        durations = list(heavy_tailed_durations(n_tasks, task_s, seed=seed, alpha=1.5))
        what = f"{n_tasks} Pareto(1.5) tasks, mean {task_s * 1e3:g} ms, max {max(durations) * 1e3:.0f} ms"
    elif name == "mandelbrot":
        durations = mandelbrot_durations(n_tasks, task_s)
        what = f"{n_tasks} Mandelbrot rows, mean {task_s * 1e3:g} ms, max {max(durations) * 1e3:.1f} ms"
    else:
        raise ValueError(f"unknown workload {name!r}: choose one of {', '.join(WORKLOADS)}")
    return Workload(name, durations, _charge, what, float(sum(durations)))


WORKLOADS = ("uniform", "heavy", "mandelbrot", "uts")
