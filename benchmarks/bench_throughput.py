"""(a) Scheduling throughput: no-op microtasks per second.

hpcmicro (every rank runs the script; rank 0 is the master)::

    mpiexec -n 3 python benchmarks/bench_throughput.py --system steal
    mpiexec -n 3 python benchmarks/bench_throughput.py --system static

mpi4py.futures.MPIPoolExecutor (rank 0 is its master, the others its workers)::

    mpiexec -n 3 python -m mpi4py.futures benchmarks/bench_throughput.py --system executor

dask.distributed (a LocalCluster of 2 single-threaded worker processes; no mpiexec)::

    python benchmarks/bench_throughput.py --system dask --workers 2

Every system runs ``benchmarks.common.noop`` on each task and returns the list
of results to the master (hpcmicro ``rt.map(..., root=0)``, executor
``list(executor.map(...))``). hpcmicro gets its defaults and nothing else: tasks
``hm.Range(n, 1)`` (payload i is ``range(i, i+1)``, computed on the worker) and,
as a second measurement, the plain list ``list(range(n))`` whose payloads travel
in the messages, as the executor's do. The executor gets ``range(n)`` and one
measurement per chunksize. Dask gets ``client.map(noop, range(n), pure=False)``
then ``client.gather`` (one task per item; ``pure=False`` so that no call can
reuse results of an earlier one) and three batched variants with ``--dask-chunk``
(4096) items per task: ``dask.bag.range(n, npartitions=n/4096).map(noop).compute()``;
``client.map(noop_chunk, [range(i, i+4096), ...])`` (each task returns its list
of results); and the same with each task returning its list pickled into one
``bytes`` (Dask serializes list results element by element, which dominates
the first two; this variant shows what is left without that).

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

from benchmarks.common import SYSTEMS, dispatch, emit, noop, parse_chunksizes  # noqa: E402

TASKS_ARG = {"Range": "hm.Range(n, 1)", "list": "list(range(n))"}  # how each kind of tasks is passed

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
        # Warm-up, long enough that every worker folds a full buffer of task times: the first such fold
        # imports NumPy (once, 50-100 ms; hpcmicro does not load it at start-up), which is no part of
        # the steady rate measured here.
        rt.map(noop, hm.Range(20_000 * max(1, workers), 1), root=0)
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
                    "config": f"hpcmicro {args.system}, tasks={TASKS_ARG[kind]}",
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


def chunks(n, size):
    return [range(i, min(n, i + size)) for i in range(0, n, size)]


def run_dask(args):
    import pickle

    import dask.bag as db

    from benchmarks.common import dask_client, noop_chunk, noop_chunk_pickled

    c = args.dask_chunk
    kinds = {
        "map": "Dask client.map (1 task per item)",
        "bag": f"Dask bag, {c} items per partition",
        "chunks": f"Dask client.map over chunks of {c} (list results)",
        "chunks-pickled": f"Dask client.map over chunks of {c} (results pickled to bytes)",
    }

    def call(client, kind, n):
        if kind == "map":
            return client.gather(client.map(noop, range(n), pure=False))
        if kind == "bag":
            return db.range(n, npartitions=max(1, -(-n // c))).map(noop).compute()
        if kind == "chunks":
            return [x for part in client.gather(client.map(noop_chunk, chunks(n, c), pure=False)) for x in part]
        parts = client.gather(client.map(noop_chunk_pickled, chunks(n, c), pure=False))
        return [x for part in parts for x in pickle.loads(part)]

    with dask_client(args.workers) as client:
        client.gather(client.map(noop, range(100), pure=False))  # warm-up: workers up and connected
        for kind, config in kinds.items():
            n = args.n0
            while True:
                t0 = _now()
                out = call(client, kind, n)
                elapsed = _now() - t0
                assert len(out) == n, (kind, len(out), n)
                nxt = grow(n, elapsed, args.min_seconds, args.n_max)
                if nxt is None:
                    break
                n = nxt
            emit({
                "bench": "throughput", "system": "dask", "config": config, "dask_kind": kind,
                "chunk": None if kind == "map" else c, "workers": args.workers, "n": n, "wall_s": elapsed,
                "tasks_per_s": n / elapsed,
            })


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", choices=SYSTEMS, required=True)
    p.add_argument("--chunksizes", default="1,16,256,4096", help="executor only")
    p.add_argument("--workers", type=int, default=2, help="dask only: worker processes")
    p.add_argument("--dask-chunk", type=int, default=4096, help="dask only: items per bag partition / chunk")
    p.add_argument("--n0", type=int, default=1000)
    p.add_argument("--n-max", type=int, default=4 ** 11)
    p.add_argument("--min-seconds", type=float, default=0.5)
    args = p.parse_args(argv)
    dispatch(args, run_hpcmicro, run_executor, run_dask)


if __name__ == "__main__":
    main()
