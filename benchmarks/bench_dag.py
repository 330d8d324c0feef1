"""The tiled Cholesky DAG (jobs/cholesky.py): hpcmicro.futures and Dask against serial and the critical path.

    python benchmarks/bench_dag.py                       # n=1536, tile=128 (12x12 tiles, 364 tasks), 3 rounds
    python benchmarks/bench_dag.py --n 2048 --tile 256 --workers 2

In each round, alternating the order: the serial run (every tile task one
after another in this process, each timed), then
``mpiexec -n W+1 python -m hpcmicro.futures jobs/cholesky.py`` (tiles kept on
their workers and fetched worker to worker; and again with every result
relayed through rank 0, ``HPCMICRO_FUTURES_KEEP_BYTES`` above any size), and the same
DAG on a Dask ``LocalCluster`` of W single-threaded worker processes
(``client.submit`` with futures as arguments). Every run checks its factor
against ``numpy.linalg.cholesky``. The critical path is the longest chain of
tasks (potrf, trsm, syrk for each step: 3T - 2 tasks), timed with the serial
run's mean time of each kind of task. BLAS is limited to one thread everywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "jobs"))
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
os.environ.update(ONE_THREAD)

import numpy as np  # noqa: E402

import cholesky  # noqa: E402


def serial(n, tile, seed):
    """Every task in order, timed by kind; returns (seconds, {kind: mean seconds}, tasks)."""
    t, b = n // tile, tile
    a = cholesky.spd_matrix(n, seed)
    times: dict = {}

    class Done:
        def __init__(self, value):
            self.value = value

        def result(self):
            return self.value

    def run_now(fn, *xs):
        args = [x.value if isinstance(x, Done) else x for x in xs]
        t0 = time.perf_counter()
        value = fn(*args)
        kind = fn.__name__ if fn is not cholesky.update or args[1] is not args[2] else "syrk"
        times.setdefault(kind, []).append(time.perf_counter() - t0)
        return Done(value)

    start = time.perf_counter()
    futures, tasks = cholesky.factor(run_now, cholesky.tiles_of(a, b), t)
    seconds = time.perf_counter() - start
    lower = cholesky.assemble({ij: f.value for ij, f in futures.items()}, t, b)
    assert np.allclose(lower, np.linalg.cholesky(a))
    return seconds, {k: statistics.mean(v) for k, v in times.items()}, tasks


def hpcmicro_run(n, tile, seed, workers, relayed=False) -> float:
    """``relayed``: every result comes back to rank 0 and goes out again in its dependents' calls."""
    from hpcmicro.constants import MPICH_ENV

    env = dict(os.environ, **MPICH_ENV, PYTHONPATH=REPO)
    if relayed:
        env["HPCMICRO_FUTURES_KEEP_BYTES"] = str(1 << 62)
    cmd = ["mpiexec", "-n", str(workers + 1), sys.executable, "-m", "hpcmicro.futures",
           os.path.join(REPO, "jobs", "cholesky.py"), "--n", str(n), "--tile", str(tile), "--seed", str(seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("{")))["seconds"]


def dask_run(client, n, tile, seed) -> float:
    t, b = n // tile, tile
    a = cholesky.spd_matrix(n, seed)
    tiles = {ij: client.scatter(v) for ij, v in cholesky.tiles_of(a, b).items()}
    start = time.perf_counter()
    futures, _ = cholesky.factor(client.submit, tiles, t)
    values = dict(zip(futures, client.gather([futures[ij] for ij in futures])))
    seconds = time.perf_counter() - start
    lower = cholesky.assemble(values, t, b)
    assert np.allclose(lower, np.linalg.cholesky(a))
    return seconds


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1536)
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           env=ONE_THREAD)
    client = Client(cluster)
    client.run(lambda: sys.path.insert(0, os.path.join(REPO, "jobs")))
    dask_run(client, args.n, args.tile, args.seed)  # warm up the workers' imports
    rows: dict = {"serial": [], "hpcmicro": [], "hpcmicro-relayed": [], "dask": []}
    kinds: dict = {}
    tasks = 0
    for r in range(args.rounds):
        s, kinds, tasks = serial(args.n, args.tile, args.seed)
        rows["serial"].append(s)
        systems = ["hpcmicro", "hpcmicro-relayed", "dask"]
        for system in systems[r % 3:] + systems[:r % 3]:
            if system.startswith("hpcmicro"):
                rows[system].append(hpcmicro_run(args.n, args.tile, args.seed, args.workers,
                                                 relayed=system == "hpcmicro-relayed"))
            else:
                rows[system].append(dask_run(client, args.n, args.tile, args.seed))
        print(json.dumps({"round": r, **{k: v[-1] for k, v in rows.items()}}), flush=True)
    client.close()
    cluster.close()
    t = args.n // args.tile
    critical = t * kinds["potrf"] + (t - 1) * (kinds["trsm"] + kinds.get("syrk", kinds["update"]))
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"\nCholesky n={args.n}, tile={args.tile} ({t}x{t} tiles, {tasks} tasks), {args.workers} workers, "
          f"medians of {args.rounds} rounds; mean task {med['serial'] / tasks * 1e3:.2f} ms\n")
    print("| run | makespan s | serial / makespan | makespan / critical path |")
    print("|---|---:|---:|---:|")
    print(f"| critical path (serial task times) | {critical:.3f} | {med['serial'] / critical:.2f} | 1.00 |")
    for k in ("serial", "hpcmicro", "hpcmicro-relayed", "dask"):
        print(f"| {k} | {med[k]:.3f} | {med['serial'] / med[k]:.2f} | {med[k] / critical:.2f} |")


if __name__ == "__main__":
    main()
