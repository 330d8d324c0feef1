"""(b) Irregular workloads: efficiency = ideal makespan / measured makespan.

hpcmicro::

    mpiexec -n 3 python benchmarks/bench_irregular.py --system steal
    mpiexec -n 3 python benchmarks/bench_irregular.py --system static

mpi4py.futures.MPIPoolExecutor (one measurement per chunksize)::

    mpiexec -n 3 python -m mpi4py.futures benchmarks/bench_irregular.py --system executor

dask.distributed (LocalCluster, 2 single-threaded worker processes)::

    python benchmarks/bench_irregular.py --system dask --workers 2

Dask gets ``client.map(kernel, tasks, pure=False)`` (one task per item, its
own scheduler and work stealing) and ``client.gather``.

Workloads (``--workloads``, comma-separated):

``mandelbrot``
    One task per image row, ``hpcmicro.kernels.mandelbrot.row_kernel`` on
    ``MANDELBROT`` below: the upper half of the usual view (y in [0, 1.5]; the
    lower half mirrors it), 384 x 384 pixels, max_iter 1000. Rows near y = 0
    cross the set and run all 1000 iterations, rows near the top escape at once:
    the expensive rows are contiguous at the start, in natural row order.
``pareto``
    ``--pareto-n`` tasks that busy-wait (``synthetic.spin``) for durations from
    ``synthetic.heavy_tailed_durations(n, mean, seed, alpha=1.5)`` (Pareto,
    capped at 50 means), in the order drawn: the heavy tail falls where the
    random draw puts it.
``pareto-sorted``
    The same durations sorted ascending: the heavy tail is clustered at the
    end of the task list (the last tasks are the longest).

Every system runs the same kernels, which time themselves with
``time.perf_counter`` and return the elapsed time. Ideal makespan = (sum of the
per-task elapsed times of that very call) / workers; efficiency = ideal /
(wall time of the call on the master, from submission to all results in hand).
One warm-up call (a few small tasks) precedes the measurements.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import SYSTEMS, WORKER_FIELDS, dispatch, emit, parse_chunksizes, timed_row, timed_spin  # noqa: E402
from hpcmicro.kernels.mandelbrot import MandelbrotParams  # noqa: E402
from hpcmicro.kernels.synthetic import heavy_tailed_durations  # noqa: E402

_now = time.perf_counter

MANDELBROT = MandelbrotParams(width=384, height=384, max_iter=1000, x_min=-2.0, x_max=1.0, y_min=0.0, y_max=1.5)


def workload(name, args):
    """``(kernel, payload list, description)`` of one workload."""
    if name == "mandelbrot":
        p = MANDELBROT
        desc = (f"Mandelbrot rows {p.width}x{p.height}, max_iter={p.max_iter}, "
                f"x in [{p.x_min}, {p.x_max}], y in [{p.y_min}, {p.y_max}], natural row order")
        return functools.partial(timed_row, p), list(range(p.height)), desc
    if name in ("pareto", "pareto-sorted"):
        d = heavy_tailed_durations(args.pareto_n, args.pareto_mean, seed=args.seed, alpha=1.5)
        order = "as drawn"
        if name == "pareto-sorted":
            d = sorted(d)
            order = "sorted ascending (longest last)"
        desc = (f"spin, {args.pareto_n} Pareto(alpha=1.5) durations, mean {args.pareto_mean * 1e3:g} ms, "
                f"max {max(d) * 1e3:.0f} ms, seed {args.seed}, {order}")
        return timed_spin, d, desc
    raise SystemExit(f"unknown workload {name!r}")


def split(values):
    """Kernel results -> (checksum or None, list of elapsed times)."""
    if values and isinstance(values[0], tuple):
        return sum(v[0] for v in values), [v[1] for v in values]
    return None, list(values)


def record(name, desc, workers, values, wall, **extra):
    checksum, times = split(values)
    busy = sum(times)
    ideal = busy / workers
    rec = {
        "bench": "irregular", "workload": name, "workload_desc": desc, "workers": workers,
        "n_tasks": len(times), "sum_task_s": busy, "max_task_s": max(times), "ideal_s": ideal,
        "wall_s": wall, "efficiency": ideal / wall, "checksum": checksum,
    }
    rec.update(extra)
    emit(rec)


def run_hpcmicro(args):
    import hpcmicro as hm

    with hm.Runtime(policy=args.system) as rt:
        workers = rt.size - 1
        rt.map(timed_spin, [0.001] * (2 * workers), root=0)  # warm-up
        for name in args.workloads.split(","):
            kernel, tasks, desc = workload(name, args)
            t0 = _now()
            out = rt.map(kernel, tasks, root=0)
            wall = _now() - t0
            if rt.is_master:
                st = rt.stats
                record(name, desc, workers, out, wall, system="hpcmicro", policy=args.system,
                       config=f"hpcmicro {args.system}", steals=st.steals,
                       runtime_efficiency=st.efficiency, stats_wall_s=st.wall_s, master_messages=st.master_messages,
                       per_worker=[{k: w.get(k) for k in WORKER_FIELDS} for w in st.workers])


def run_executor(args):
    from mpi4py import MPI
    from mpi4py.futures import MPIPoolExecutor

    workers = MPI.COMM_WORLD.Get_size() - 1
    with MPIPoolExecutor() as ex:
        list(ex.map(timed_spin, [0.001] * (2 * workers), chunksize=1))  # warm-up
        for name in args.workloads.split(","):
            kernel, tasks, desc = workload(name, args)
            for c in parse_chunksizes(args.chunksizes):
                t0 = _now()
                out = list(ex.map(kernel, tasks, chunksize=c))
                wall = _now() - t0
                record(name, desc, workers, out, wall, system="MPIPoolExecutor", chunksize=c,
                       config=f"MPIPoolExecutor chunksize={c}")


def run_dask(args):
    from benchmarks.common import dask_client

    with dask_client(args.workers) as client:
        client.gather(client.map(timed_spin, [0.001] * (2 * args.workers), pure=False))  # warm-up
        for name in args.workloads.split(","):
            kernel, tasks, desc = workload(name, args)
            t0 = _now()
            out = client.gather(client.map(kernel, tasks, pure=False))
            wall = _now() - t0
            record(name, desc, args.workers, out, wall, system="dask", config="Dask client.map")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", choices=SYSTEMS, required=True)
    p.add_argument("--workers", type=int, default=2, help="dask only: worker processes")
    p.add_argument("--workloads", default="mandelbrot,pareto,pareto-sorted")
    p.add_argument("--chunksizes", default="1,2,4,8,16,32", help="executor only")
    p.add_argument("--pareto-n", type=int, default=600)
    p.add_argument("--pareto-mean", type=float, default=0.005)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    dispatch(args, run_hpcmicro, run_executor, run_dask)


if __name__ == "__main__":
    main()
