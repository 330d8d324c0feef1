"""(e) Scaling from 2 to 16 ranks on a fixed irregular workload of sleeping tasks.

The workload: ``--n`` (1000) tasks whose lengths are
``synthetic.heavy_tailed_durations(n, mean=4 ms, seed=1, alpha=1.5)`` (Pareto,
capped at 50 means = 200 ms; 4 s in all), in the order drawn. The kernel
``benchmarks.common.timed_sleep`` *sleeps* (``time.sleep``) and returns the
time it took: a sleeping task uses no CPU, so running 16 processes on a
2-core machine still measures how well the tasks are spread over the workers,
not how the cores are time-shared. (Scheduling overhead itself does use the
CPU, and does compete for the 2 cores: that part is real.)

hpcmicro (1 master rank + N-1 worker ranks)::

    mpiexec -n 16 python benchmarks/bench_scaling.py --system steal

mpi4py.futures.MPIPoolExecutor (1 master + N-1 workers), ``executor.map(kernel,
durations, chunksize=1)`` (tasks of milliseconds: chunksize 1 is the natural
choice, and the best for load balance)::

    mpiexec -n 16 python -m mpi4py.futures benchmarks/bench_scaling.py --system executor

dask.distributed (LocalCluster of W single-threaded worker processes; give W =
ranks - 1 to match the other two), ``client.map(kernel, durations, pure=False)``::

    python benchmarks/bench_scaling.py --system dask --workers 15

Efficiency = (sum of the measured task times / workers) / measured makespan;
run_all.py adds the speedup over the same system with 1 worker.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import SYSTEMS, dispatch, emit, timed_sleep  # noqa: E402
from hpcmicro.kernels.synthetic import heavy_tailed_durations  # noqa: E402

_now = time.perf_counter


def durations(args):
    d = heavy_tailed_durations(args.n, args.mean, seed=args.seed, alpha=1.5)
    desc = (f"sleep, {args.n} Pareto(alpha=1.5) durations, mean {args.mean * 1e3:g} ms, "
            f"max {max(d) * 1e3:.0f} ms, total {sum(d):.2f} s, seed {args.seed}, as drawn")
    return d, desc


def greedy_makespan(d, workers):
    """Makespan of a zero-overhead list schedule in task order: each task to the first free worker."""
    import heapq

    free = [0.0] * workers
    for x in d:
        heapq.heappush(free, heapq.heappop(free) + x)
    return max(free)


def record(system, config, workers, ranks, times, wall, desc, **extra):
    busy = sum(times)
    rec = {
        "bench": "scaling", "system": system, "config": config, "workers": workers, "ranks": ranks,
        "n_tasks": len(times), "sum_task_s": busy, "max_task_s": max(times), "ideal_s": busy / workers,
        "wall_s": wall, "efficiency": busy / workers / wall, "workload_desc": desc,
        "oversubscribed": workers > (os.cpu_count() or 1),
        # the same list schedule on the times the tasks measured: what a scheduler with no overhead would get
        "greedy_s": greedy_makespan(times, workers),
    }
    rec.update(extra)
    emit(rec)


def run_hpcmicro(args):
    import hpcmicro as hm

    d, desc = durations(args)
    with hm.Runtime(policy=args.system) as rt:
        workers = rt.size - 1
        rt.map(timed_sleep, [0.001] * (2 * workers), root=0)  # warm-up
        t0 = _now()
        out = rt.map(timed_sleep, d, root=0)
        wall = _now() - t0
        if rt.is_master:
            record("hpcmicro", f"hpcmicro {args.system}", workers, rt.size, out, wall, desc, policy=args.system,
                   steals=rt.stats.steals)


def run_executor(args):
    from mpi4py import MPI
    from mpi4py.futures import MPIPoolExecutor

    d, desc = durations(args)
    size = MPI.COMM_WORLD.Get_size()
    with MPIPoolExecutor() as ex:
        list(ex.map(timed_sleep, [0.001] * (2 * (size - 1))))  # warm-up
        t0 = _now()
        out = list(ex.map(timed_sleep, d, chunksize=1))
        wall = _now() - t0
        record("MPIPoolExecutor", "MPIPoolExecutor chunksize=1", size - 1, size, out, wall, desc, chunksize=1)


def run_dask(args):
    from benchmarks.common import dask_client

    d, desc = durations(args)
    with dask_client(args.workers) as client:
        client.gather(client.map(timed_sleep, [0.001] * (2 * args.workers), pure=False))  # warm-up
        t0 = _now()
        out = client.gather(client.map(timed_sleep, d, pure=False))
        wall = _now() - t0
        # processes: W workers + this one (client and scheduler)
        record("dask", "Dask client.map", args.workers, args.workers + 1, out, wall, desc)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", choices=SYSTEMS, required=True)
    p.add_argument("--workers", type=int, default=2, help="dask only: worker processes")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--mean", type=float, default=0.004)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    dispatch(args, run_hpcmicro, run_executor, run_dask)


if __name__ == "__main__":
    main()
