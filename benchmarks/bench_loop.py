"""The engine's cost per spawned task, without MPI, threads or a runtime: one ``Executor`` alone.

``Executor.run_slice`` walks a UTS tree (each node a task spawned by its
parent, the node count folded by "sum") beside the plain serial loop over
the same tree (``bench_uts.serial_loop``), alternately, best of ``--repeats``;
it prints both rates and the engine's overhead in microseconds per node::

    python benchmarks/bench_loop.py                  # GEO_D7: 63,914 nodes
    python benchmarks/bench_loop.py --tree GEO_D8 --repeats 5
    python benchmarks/bench_loop.py --tree BIN_200_S51 --repeats 3
    py-spy record -r 1500 -f raw -o loop.raw -- python benchmarks/bench_loop.py   # where the time goes
"""

from __future__ import annotations

import argparse
import functools
import operator
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bench_uts import serial_loop  # noqa: E402
from hpcmicro.engine.executor import Executor  # noqa: E402
from hpcmicro.engine.tasks import RootRun  # noqa: E402
from hpcmicro.kernels import uts  # noqa: E402

TREES = {
    "GEO_D7": uts.UTSParams(tree_type=uts.GEO, shape=uts.FIXED, gen_mx=7, b0=4.0, root_seed=19),
    "GEO_D8": uts.UTSParams(tree_type=uts.GEO, shape=uts.FIXED, gen_mx=8, b0=4.0, root_seed=19),
    # T3's binomial shape (q*m = 0.999), 200 root children, seed 51: 683,569 nodes; 7 in 8 nodes are leaves.
    "BIN_200_S51": uts.UTSParams(tree_type=uts.BIN, b0=200.0, q=0.124875, m=8, root_seed=51),
}


def engine_walk(params) -> tuple[int, float]:
    root = uts.root(params)
    ex = Executor(functools.partial(uts.count_kernel, params), "reduce", [root], 1, op=operator.add)
    ex.queue.push_entries([RootRun(0, 1, 0, [root], 0)])
    t = time.perf_counter()
    while ex.queue:
        ex.run_slice(time.perf_counter() + 0.01)
    return ex.done, time.perf_counter() - t


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", default="GEO_D7", choices=sorted(TREES))
    ap.add_argument("--repeats", type=int, default=8)
    args = ap.parse_args(argv)
    params = TREES[args.tree]
    best_serial = best_engine = float("inf")
    for _ in range(args.repeats):
        t = time.perf_counter()
        n = serial_loop(params)
        best_serial = min(best_serial, time.perf_counter() - t)
        done, dt = engine_walk(params)
        if done != n:
            raise SystemExit(f"WRONG: the engine ran {done} tasks for {n} nodes")
        best_engine = min(best_engine, dt)
    print(f"{args.tree}: {n} nodes; serial loop {n / best_serial / 1e3:.0f}k/s, engine {n / best_engine / 1e3:.0f}k/s "
          f"({best_serial / best_engine:.2f} of serial); engine overhead "
          f"{1e6 * (best_engine - best_serial) / n:.2f} us per node (best of {args.repeats})")


if __name__ == "__main__":
    main()
