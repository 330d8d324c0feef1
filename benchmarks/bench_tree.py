"""(c) Spawn-heavy tree search: Unbalanced Tree Search (UTS), counting nodes.

hpcmicro (one root task; each task spawns its node's children and returns 1;
``map_reduce(op="sum")`` counts the nodes)::

    mpiexec -n 3 python benchmarks/bench_tree.py --system steal
    mpiexec -n 3 python benchmarks/bench_tree.py --system static

mpi4py.futures.MPIPoolExecutor: its tasks cannot submit tasks, so the tree is
walked level by level (breadth-first): ``executor.map(children, frontier,
chunksize=c)`` returns the children of every frontier node, which become the
next frontier; the count is the sum of the frontier sizes::

    mpiexec -n 3 python -m mpi4py.futures benchmarks/bench_tree.py --system executor

dask.distributed (LocalCluster of 2 single-threaded worker processes): tasks
submitting tasks. ``benchmarks.common.uts_count_dask`` visits a node, submits
one task per child from inside the task (``distributed.worker_client``: the
task secedes from the worker's thread pool while it waits for its children)
and returns 1 + the sum of its children's counts::

    python benchmarks/bench_tree.py --system dask --workers 2 --trees SMALL_GEO,BIN_200_Q012_S7

Every measurement checks its count against ``uts.serial_stats`` (computed on
the master after the timed calls, and timed too: the serial walk is the
reference for speedup). One warm-up call on ``uts.DEFAULT`` (1,732 nodes)
precedes the measurements.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import SYSTEMS, WORKER_FIELDS, dispatch, emit, parse_chunksizes, uts_children  # noqa: E402
from hpcmicro.kernels import uts  # noqa: E402

_now = time.perf_counter

# Trees small enough for the whole suite to stay at a few minutes on 2 cores
# (sizes from uts.serial_stats; nothing published for these parameters).
TREES = {
    # geometric, fixed branching factor 4 down to depth 7: bushy and shallow
    "GEO_FIXED_D7": uts.UTSParams(tree_type=uts.GEO, shape=uts.FIXED, gen_mx=7, b0=4.0, root_seed=19),
    # binomial: 2000 root children, then 8 children with probability 0.12
    # (q*m = 0.96): many small, deep, unpredictable subtrees
    "BIN_2000_Q012": uts.UTSParams(tree_type=uts.BIN, b0=2000.0, q=0.12, m=8, root_seed=42),
    # small enough for Dask (a few hundred tasks per second here): 4,201 nodes, depth 63
    "BIN_200_Q012_S7": uts.UTSParams(tree_type=uts.BIN, b0=200.0, q=0.12, m=8, root_seed=7),
}
# The executor's chunksize 1 (~4,000 tasks/s) runs only on trees up to this size.
CS1_MAX_NODES = 20_000
TREES.update(uts.PRESETS)


def describe(name, params):
    p = params
    kind = {uts.BIN: "binomial", uts.GEO: "geometric", uts.HYBRID: "hybrid"}[p.tree_type]
    if p.tree_type == uts.BIN:
        return f"{name}: {kind}, b0={p.b0:g}, q={p.q:g}, m={p.m}, seed={p.root_seed}"
    shape = {uts.LINEAR: "linear", uts.EXPDEC: "expdec", uts.CYCLIC: "cyclic", uts.FIXED: "fixed"}[p.shape]
    return f"{name}: {kind} ({shape}), b0={p.b0:g}, gen_mx={p.gen_mx}, seed={p.root_seed}"


def serial_reference(params):
    t0 = _now()
    ref = uts.serial_stats(params)
    return ref, _now() - t0


def record(name, params, workers, count, wall, ref, serial_s, **extra):
    rec = {
        "bench": "tree", "tree": name, "tree_desc": describe(name, params), "workers": workers,
        "nodes": count, "expected_nodes": ref.nodes, "max_depth": ref.max_depth, "verified": count == ref.nodes,
        "wall_s": wall, "nodes_per_s": count / wall, "serial_s": serial_s, "speedup_vs_serial": serial_s / wall,
    }
    rec.update(extra)
    emit(rec)


def run_hpcmicro(args):
    import hpcmicro as hm

    with hm.Runtime(policy=args.system) as rt:
        workers = rt.size - 1
        warm = uts.DEFAULT
        rt.map_reduce(functools.partial(uts.count_kernel, warm), [uts.root(warm)], op="sum", root=0)
        for name in args.trees.split(","):
            params = TREES[name]
            t0 = _now()
            count = rt.map_reduce(functools.partial(uts.count_kernel, params), [uts.root(params)], op="sum", root=0)
            wall = _now() - t0
            if rt.is_master:
                st = rt.stats
                ref, serial_s = serial_reference(params)
                record(name, params, workers, count, wall, ref, serial_s, system="hpcmicro", policy=args.system,
                       config=f"hpcmicro {args.system}", steals=st.steals, tasks=st.tasks,
                       runtime_efficiency=st.efficiency, master_messages=st.master_messages,
                       per_worker=[{k: w.get(k) for k in WORKER_FIELDS} for w in st.workers])


def bfs_count(ex, params, chunksize):
    """Level-synchronous walk: one executor.map per level. Returns (nodes, levels)."""
    frontier = [uts.root(params)]
    count = levels = 0
    kernel = functools.partial(uts_children, params)
    while frontier:
        count += len(frontier)
        levels += 1
        nxt = []
        for kids in ex.map(kernel, frontier, chunksize=chunksize):
            nxt.extend(kids)
        frontier = nxt
    return count, levels


def run_executor(args):
    from mpi4py import MPI
    from mpi4py.futures import MPIPoolExecutor

    workers = MPI.COMM_WORLD.Get_size() - 1
    with MPIPoolExecutor() as ex:
        bfs_count(ex, uts.DEFAULT, 1)  # warm-up
        for name in args.trees.split(","):
            params = TREES[name]
            results = []
            ref, serial_s = serial_reference(params)
            for c in parse_chunksizes(args.chunksizes):
                if c == 1 and ref.nodes > CS1_MAX_NODES:
                    continue  # ~4,000 tasks/s: 15 s a tree, and nothing to learn
                t0 = _now()
                count, levels = bfs_count(ex, params, c)
                results.append((c, count, levels, _now() - t0))
            for c, count, levels, wall in results:
                record(name, params, workers, count, wall, ref, serial_s, system="MPIPoolExecutor", chunksize=c,
                       config=f"MPIPoolExecutor chunksize={c}", levels=levels)


def run_dask(args):
    from benchmarks.common import dask_client, uts_count_dask

    with dask_client(args.workers) as client:
        warm = uts.DEFAULT
        client.submit(uts_count_dask, warm, uts.root(warm), pure=False).result()  # warm-up
        for name in args.trees.split(","):
            params = TREES[name]
            t0 = _now()
            count = client.submit(uts_count_dask, params, uts.root(params), pure=False).result()
            wall = _now() - t0
            ref, serial_s = serial_reference(params)
            record(name, params, args.workers, count, wall, ref, serial_s, system="dask",
                   config="Dask tasks submitting tasks")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", choices=SYSTEMS, required=True)
    p.add_argument("--trees", default="SMALL_GEO,BIN_200_Q012_S7,GEO_FIXED_D7,BIN_2000_Q012")
    p.add_argument("--chunksizes", default="1,16,256,4096",
                   help=f"executor only (chunksize 1 only on trees of at most {CS1_MAX_NODES:,} nodes)")
    p.add_argument("--workers", type=int, default=2, help="dask only: worker processes")
    args = p.parse_args(argv)
    for name in args.trees.split(","):
        if name not in TREES:
            raise SystemExit(f"unknown tree {name!r}: one of {', '.join(TREES)}")
    dispatch(args, run_hpcmicro, run_executor, run_dask)


if __name__ == "__main__":
    main()
