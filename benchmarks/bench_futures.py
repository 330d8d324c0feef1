"""hpcmicro.futures against mpi4py.futures and Dask: a no-op submit loop, and map at several chunksizes.

    python benchmarks/bench_futures.py                 # 3 ranks (1 master + 2 workers), 3 rounds, ~1 minute
    python benchmarks/bench_futures.py --ranks 5 --rounds 5

The driver alternates the systems round by round (slow drifts of a noisy
machine hit all alike): ``mpiexec -n R python -m {hpcmicro,mpi4py}.futures
bench_futures.py --measure``, and Dask's ``Client`` on a ``LocalCluster`` of
R - 1 single-threaded worker processes (``client.submit``; ``client.map`` of
chunks for map, as Dask has no chunksize):

- submit loop: ``[ex.submit(noop) for _ in range(n)]`` then every result, tasks/s;
- ``list(ex.map(noop, range(n), chunksize=c))`` for c in 1, 10, 100, tasks/s;
- a chain of CHAIN calls, each on the one before's result (a future as the
  argument; mpi4py, which cannot take one, waits for each result first), ms a hop.

It prints one JSON line per measurement and a Markdown table of medians.
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
CHUNKS = (1, 10, 100)


def noop(x=None):
    return None


def inc(x):
    return x + 1


CHAIN = 200  # calls each taking the one before's result: the latency of one dependency hop


def measure(n: int) -> None:
    if os.environ.get("BENCH_SYSTEM") == "hpcmicro":
        from hpcmicro.futures import MPIPoolExecutor
    else:
        from mpi4py.futures import MPIPoolExecutor
    out = {"system": os.environ.get("BENCH_SYSTEM")}
    with MPIPoolExecutor() as ex:
        [f.result() for f in [ex.submit(noop) for _ in range(200)]]  # warm up
        t = time.perf_counter()
        fs = [ex.submit(noop) for _ in range(n)]
        for f in fs:
            f.result()
        out["submit_per_s"] = n / (time.perf_counter() - t)
        for c in CHUNKS:
            t = time.perf_counter()
            assert list(ex.map(noop, range(n), chunksize=c)) == [None] * n
            out[f"map_c{c}_per_s"] = n / (time.perf_counter() - t)
        t = time.perf_counter()
        f = ex.submit(inc, 0)
        for _ in range(CHAIN - 1):  # mpi4py cannot take a future as an argument: wait for each
            f = ex.submit(inc, f if os.environ.get("BENCH_SYSTEM") == "hpcmicro" else f.result())
        assert f.result() == CHAIN
        out["hop_ms"] = (time.perf_counter() - t) / CHAIN * 1e3
        out["workers"] = ex.num_workers
    print(json.dumps(out), flush=True)


def measure_dask(n: int, workers: int) -> dict:
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.gather([client.submit(noop, i, pure=False) for i in range(200)])  # warm up
        out = {"system": "dask"}
        t = time.perf_counter()
        fs = [client.submit(noop, pure=False) for _ in range(n)]
        client.gather(fs)
        out["submit_per_s"] = n / (time.perf_counter() - t)
        for c in CHUNKS:
            t = time.perf_counter()
            chunks = [list(range(i, min(n, i + c))) for i in range(0, n, c)]
            got = client.gather(client.map(_noop_chunk, chunks, pure=False))
            assert sum(len(g) for g in got) == n
            out[f"map_c{c}_per_s"] = n / (time.perf_counter() - t)
        t = time.perf_counter()
        f = client.submit(inc, 0, pure=False)
        for _ in range(CHAIN - 1):
            f = client.submit(inc, f, pure=False)
        assert f.result() == CHAIN
        out["hop_ms"] = (time.perf_counter() - t) / CHAIN * 1e3
        out["workers"] = workers
    return out


def _noop_chunk(chunk):
    return [noop(x) for x in chunk]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--ranks", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if args.measure:
        measure(args.n)
        return
    from hpcmicro.constants import MPICH_ENV

    results: dict = {"hpcmicro": [], "mpi4py": [], "dask": []}
    systems = ["hpcmicro", "mpi4py", "dask"]
    for r in range(args.rounds):
        for system in systems[r % 3:] + systems[:r % 3]:
            if system == "dask":
                rec = measure_dask(args.n, args.ranks - 1)
                print(json.dumps(rec), flush=True)
                results["dask"].append(rec)
                continue
            env = dict(os.environ, **MPICH_ENV, BENCH_SYSTEM=system, PYTHONPATH=REPO)
            cmd = ["mpiexec", "-n", str(args.ranks), sys.executable, "-m", f"{system}.futures", __file__,
                   "--measure", "--n", str(args.n)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("{")), None)
            if line is None:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
            print(line, flush=True)
            results[system].append(json.loads(line))
    keys = ["submit_per_s"] + [f"map_c{c}_per_s" for c in CHUNKS] + ["hop_ms"]
    print(f"\n{args.ranks} ranks, n={args.n}, medians of {args.rounds} rounds (tasks/s)\n")
    print("| system | submit loop | " + " | ".join(f"map chunksize={c}" for c in CHUNKS) + " | dependency hop ms |")
    print("|---|" + "---:|" * len(keys))
    med = {s: {k: statistics.median(r[k] for r in rs) for k in keys} for s, rs in results.items()}
    for s in ("hpcmicro", "mpi4py", "dask"):
        label = "Dask distributed" if s == "dask" else f"{s}.futures"
        print(f"| {label} | " + " | ".join(f"{med[s][k]:,.0f}" for k in keys[:-1]) + f" | {med[s]['hop_ms']:.2f} |")
    best = max(med["mpi4py"][k] for k in keys[1:-1])
    print(f"\nsubmit loop: hpcmicro / mpi4py = {med['hpcmicro']['submit_per_s'] / med['mpi4py']['submit_per_s']:.1f}x, "
          f"hpcmicro / Dask = {med['hpcmicro']['submit_per_s'] / med['dask']['submit_per_s']:.1f}x; "
          f"hpcmicro map(chunksize=1) / mpi4py's best map = {med['hpcmicro']['map_c1_per_s'] / best:.2f}x")


if __name__ == "__main__":
    main()
