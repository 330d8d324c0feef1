"""(d) Floating-point sum reduction: is the value bitwise the same for 1, 2 and 4 workers?

The values: ``hpcmicro.kernels.synthetic.order_sensitive_value(i)`` for
i in [0, n) (default n = 2000), one task each, computed by
``benchmarks.common.jittered_value(i)``, which first busy-waits 0 to 0.4 ms
(a fixed function of i) so that tasks have slightly different lengths, as
real ones do, and results arrive out of index order. They are built so that their
float sum depends on the order of addition (big terms that cancel pair by pair
in index order, plus small terms that lose different low bits in any other
order). Every system computes the same n values; only the way they are summed
differs. Each launch reports, for its worker count, the value (``float.hex``)
of every variant:

hpcmicro (``rt.map_reduce(jittered_value, list(range(n)), op="sum")``:
a fixed pairwise tree over task ids, whatever worker ran what)::

    mpiexec -n 3 python benchmarks/bench_reduce.py --system steal
    mpiexec -n 3 python benchmarks/bench_reduce.py --system static

mpi4py.futures.MPIPoolExecutor, one ``executor.submit`` per value, summed
(a) in arrival order, ``sum(f.result() for f in as_completed(futures))``, and
(b) in submission order, ``sum(f.result() for f in futures)`` (what
``sum(executor.map(...))`` does)::

    mpiexec -n 3 python -m mpi4py.futures benchmarks/bench_reduce.py --system executor

dask.distributed (LocalCluster of W single-threaded worker processes), on the
same ``client.map(jittered_value, range(n), pure=False)`` futures:
(a) arrival order on the client, ``sum(f.result() for f in as_completed(futures))``;
(b) ``client.submit(sum, futures)`` (a task that sums the list in index order);
and (c) a tree reduction, ``dask.bag.range(n, npartitions=16).map(jittered_value).sum()``::

    python benchmarks/bench_reduce.py --system dask --workers 2

Each record also carries the serial left fold ``sum(values)`` in index order
and ``math.fsum(values)`` (the correctly rounded sum) as references.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import SYSTEMS, dispatch, emit, jittered_value  # noqa: E402
from hpcmicro.kernels.synthetic import order_sensitive_value  # noqa: E402

_now = time.perf_counter


def references(n):
    values = [order_sensitive_value(i) for i in range(n)]
    return {"left_fold_hex": float.hex(sum(values)), "fsum_hex": float.hex(math.fsum(values)),
            "fsum": math.fsum(values)}


def record(system, variant, config, workers, n, value, wall, **extra):
    ref = references(n)
    rec = {
        "bench": "reduce", "system": system, "variant": variant, "config": config, "workers": workers,
        "n_tasks": n, "value_hex": float.hex(value), "abs_error_vs_fsum": abs(value - ref["fsum"]),
        "equals_left_fold": float.hex(value) == ref["left_fold_hex"], "wall_s": wall,
        "left_fold_hex": ref["left_fold_hex"], "fsum_hex": ref["fsum_hex"],
    }
    rec.update(extra)
    emit(rec)


def run_hpcmicro(args):
    import hpcmicro as hm

    with hm.Runtime(policy=args.system) as rt:
        workers = rt.size - 1
        rt.map_reduce(jittered_value, list(range(64)), op="sum", root=0)  # warm-up
        t0 = _now()
        value = rt.map_reduce(jittered_value, list(range(args.n)), op="sum", root=0)
        wall = _now() - t0
        if rt.is_master:
            record("hpcmicro", "map_reduce", f"hpcmicro {args.system}: map_reduce(op=\"sum\")", workers, args.n,
                   value, wall, policy=args.system, steals=rt.stats.steals)


def run_executor(args):
    from concurrent.futures import as_completed

    from mpi4py import MPI
    from mpi4py.futures import MPIPoolExecutor

    workers = MPI.COMM_WORLD.Get_size() - 1
    with MPIPoolExecutor() as ex:
        list(ex.map(jittered_value, range(64)))  # warm-up
        t0 = _now()
        futures = [ex.submit(jittered_value, i) for i in range(args.n)]
        arrival = sum(f.result() for f in as_completed(futures))
        wall = _now() - t0
        ordered = sum(f.result() for f in futures)  # the same results, in submission order
        record("MPIPoolExecutor", "as_completed", "MPIPoolExecutor: sum over as_completed (arrival order)",
               workers, args.n, arrival, wall)
        record("MPIPoolExecutor", "ordered", "MPIPoolExecutor: sum in submission order (= sum(executor.map))",
               workers, args.n, ordered, wall)


def run_dask(args):
    import dask.bag as db
    from distributed import as_completed

    from benchmarks.common import dask_client

    with dask_client(args.workers) as client:
        client.gather(client.map(jittered_value, range(64), pure=False))  # warm-up
        t0 = _now()
        futures = client.map(jittered_value, range(args.n), pure=False)
        arrival = sum(f.result() for f in as_completed(futures))
        wall = _now() - t0
        t0 = _now()
        ordered = client.submit(sum, futures, pure=False).result()
        wall_ordered = _now() - t0
        t0 = _now()
        tree = db.range(args.n, npartitions=16).map(jittered_value).sum().compute()
        wall_tree = _now() - t0
        w = args.workers
        record("dask", "as_completed", "Dask: sum over as_completed (arrival order)", w, args.n, arrival, wall)
        record("dask", "ordered", "Dask: client.submit(sum, futures) (index order)", w, args.n, ordered,
               wall_ordered)
        record("dask", "bag", "Dask: bag.range(n, npartitions=16).map(...).sum() (tree)", w, args.n, tree,
               wall_tree)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", choices=SYSTEMS, required=True)
    p.add_argument("--n", type=int, default=2000, help="number of values (tasks)")
    p.add_argument("--workers", type=int, default=2, help="dask only: worker processes")
    args = p.parse_args(argv)
    dispatch(args, run_hpcmicro, run_executor, run_dask)


if __name__ == "__main__":
    main()
