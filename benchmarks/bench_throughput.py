"""(a) Scheduling throughput: no-op microtasks per second.

hpcmicro (every rank runs the script; rank 0 is the master)::

    mpiexec -n 3 python benchmarks/bench_throughput.py --system steal
    mpiexec -n 3 python benchmarks/bench_throughput.py --system static

mpi4py.futures.MPIPoolExecutor (rank 0 is its master, the others its workers)::

    mpiexec -n 3 python -m mpi4py.futures benchmarks/bench_throughput.py --system executor

Every system runs ``benchmarks.common.noop`` on each task and returns the list
of results to the master (hpcmicro ``rt.map(..., root=0)``, executor
``list(executor.map(...))``). hpcmicro gets its defaults and nothing else: tasks
``hm.Range(n, 1)`` (payload i is ``range(i, i+1)``, computed on the worker) and,
as a second measurement, the plain list ``list(range(n))`` whose payloads travel
in the messages, as the executor's do. The executor gets ``range(n)`` and one
measurement per chunksize.

The number of tasks grows (x4) from ``--n0`` until one call lasts at least
``--min-seconds`` (or reaches ``--n-max``); the last call is the measurement, so
each system is timed on a call long enough to amortize its start and end.
One warm-up call of 100 tasks precedes the first measurement of each kind.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import emit, noop, parse_chunksizes  # noqa: E402

_now = time.perf_counter


def grow(n, elapsed, min_s, n_max):
    """The next task count, or None when this call is the measurement."""
    if elapsed >= min_s or n >= n_max:
        return None
    return min(n_max, n * 4)


def run_hpcmicro(args):
    from mpi4py import MPI

    import hpcmicro as hm

    world = MPI.COMM_WORLD
    with hm.Runtime(policy=args.system) as rt:
        workers = rt.size - 1
        rt.map(noop, hm.Range(100, 1), root=0)  # warm-up
        for kind in ("Range", "list"):
            n = args.n0
            while True:
                tasks = hm.Range(n, 1) if kind == "Range" else list(range(n))
                t0 = _now()
                out = rt.map(noop, tasks, root=0)
                elapsed = _now() - t0
                nxt = None
                if rt.is_master:
                    assert len(out) == n, (len(out), n)
                    nxt = grow(n, elapsed, args.min_seconds, args.n_max)
                nxt = world.bcast(nxt, root=0)
                if nxt is None:
                    break
                n = nxt
            if rt.is_master:
                st = rt.stats
                emit({
                    "bench": "throughput", "system": "hpcmicro", "policy": args.system,
                    "config": f"hpcmicro {args.system}, tasks={'hm.Range(n, 1)' if kind == 'Range' else 'list(range(n))'}",
                    "tasks_kind": kind, "workers": workers, "n": n, "wall_s": elapsed,
                    "tasks_per_s": n / elapsed, "steals": st.steals, "master_messages": st.master_messages,
                    "per_worker": [{k: w[k] for k in ("tasks", "busy_s", "idle_s", "wall_s", "requests")}
                                   for w in st.workers],
                })


def run_executor(args):
    from mpi4py import MPI
    from mpi4py.futures import MPIPoolExecutor

    workers = MPI.COMM_WORLD.Get_size() - 1
    with MPIPoolExecutor() as ex:
        list(ex.map(noop, range(100), chunksize=1))  # warm-up: the pool is up and connected
        for c in parse_chunksizes(args.chunksizes):
            n = args.n0
            while True:
                t0 = _now()
                out = list(ex.map(noop, range(n), chunksize=c))
                elapsed = _now() - t0
                assert len(out) == n
                nxt = grow(n, elapsed, args.min_seconds, args.n_max)
                if nxt is None:
                    break
                n = nxt
            emit({
                "bench": "throughput", "system": "MPIPoolExecutor", "chunksize": c,
                "config": f"MPIPoolExecutor chunksize={c}", "workers": workers, "n": n,
                "wall_s": elapsed, "tasks_per_s": n / elapsed,
            })


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", choices=("steal", "static", "executor"), required=True)
    p.add_argument("--chunksizes", default="1,16,256,4096", help="executor only")
    p.add_argument("--n0", type=int, default=1000)
    p.add_argument("--n-max", type=int, default=4 ** 10)
    p.add_argument("--min-seconds", type=float, default=0.5)
    args = p.parse_args(argv)
    if args.system == "executor":
        run_executor(args)
    else:
        run_hpcmicro(args)


if __name__ == "__main__":
    main()
