"""Large values between dependent tasks: kept on their worker and fetched worker to worker, or relayed.

    python benchmarks/bench_values.py                  # 3 ranks (1 master + 2 workers), 8 MB values, 3 rounds
    python benchmarks/bench_values.py --mb 32 --pairs 20 --ranks 5

Each of PAIRS producers makes an array of MB megabytes; a consumer of each
takes it as its argument and sums it; the figure is MB of arrays handed from
producer to consumer per second (all pairs in flight at once). Side by side,
alternating the order each round:

- hpcmicro.futures, the producer's future passed as the argument: the array
  stays on its worker and the consumer's worker fetches it (pkl5 buffers);
- the same with ``HPCMICRO_FUTURES_KEEP_BYTES`` above any size: every result
  comes back to rank 0 as a pickle and goes out again in the consumer's call;
- mpi4py.futures, which cannot take a future: rank 0 waits for each result and
  submits the consumer with it (a relay through rank 0, as its users must);
- Dask distributed (``client.submit(consume, future)``: worker to worker).

Every consumer's sum is checked against the value numpy gives here.
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
NEVER_KEEP = str(1 << 62)


def produce(seed: int, n: int):
    import numpy as np

    return np.full(n, float(seed))


def consume(x) -> float:
    return float(x.sum())


def expected(pairs: int, n: int) -> list:
    return [float(seed) * n for seed in range(pairs)]


def measure(pairs: int, n: int) -> None:
    system = os.environ["BENCH_SYSTEM"]
    if system.startswith("hpcmicro"):
        from hpcmicro.futures import MPIPoolExecutor
    else:
        from mpi4py.futures import MPIPoolExecutor
    with MPIPoolExecutor() as ex:
        [f.result() for f in [ex.submit(consume, ex.submit(produce, 1, 1000).result()) for _ in range(20)]]  # warm up
        t = time.perf_counter()
        made = [ex.submit(produce, seed, n) for seed in range(pairs)]
        if system.startswith("hpcmicro"):
            sums = [ex.submit(consume, f) for f in made]
        else:  # mpi4py cannot take a future as an argument
            sums = [ex.submit(consume, f.result()) for f in made]
        got = [f.result() for f in sums]
        seconds = time.perf_counter() - t
    assert got == expected(pairs, n), "a consumer saw the wrong array"
    print(json.dumps({"system": system, "mb_per_s": pairs * n * 8 / 1e6 / seconds, "seconds": seconds}), flush=True)


def measure_dask(pairs: int, n: int, workers: int) -> dict:
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.gather([client.submit(consume, client.submit(produce, 1, 1000, pure=False), pure=False)
                       for _ in range(20)])
        t = time.perf_counter()
        made = [client.submit(produce, seed, n, pure=False) for seed in range(pairs)]
        got = client.gather([client.submit(consume, f, pure=False) for f in made])
        seconds = time.perf_counter() - t
    assert got == expected(pairs, n), "a consumer saw the wrong array"
    return {"system": "dask", "mb_per_s": pairs * n * 8 / 1e6 / seconds, "seconds": seconds}


SYSTEMS = ["hpcmicro", "hpcmicro-relayed", "mpi4py", "dask"]
LABELS = {"hpcmicro": "hpcmicro.futures (kept on the worker)",
          "hpcmicro-relayed": "hpcmicro.futures (relayed through rank 0)",
          "mpi4py": "mpi4py.futures (result() then submit)", "dask": "Dask distributed"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mb", type=float, default=8.0, help="size of each array, MB")
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--ranks", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    n = int(args.mb * 1e6 / 8)
    if args.measure:
        measure(args.pairs, n)
        return
    from hpcmicro.constants import MPICH_ENV

    results: dict = {s: [] for s in SYSTEMS}
    for r in range(args.rounds):
        for system in SYSTEMS[r % 4:] + SYSTEMS[:r % 4]:
            if system == "dask":
                rec = measure_dask(args.pairs, n, args.ranks - 1)
            else:
                env = dict(os.environ, **MPICH_ENV, BENCH_SYSTEM=system, PYTHONPATH=REPO)
                if system == "hpcmicro-relayed":
                    env["HPCMICRO_FUTURES_KEEP_BYTES"] = NEVER_KEEP
                module = "mpi4py" if system == "mpi4py" else "hpcmicro"
                cmd = ["mpiexec", "-n", str(args.ranks), sys.executable, "-m", f"{module}.futures", __file__,
                       "--measure", "--mb", str(args.mb), "--pairs", str(args.pairs)]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
                line = next((x for x in proc.stdout.splitlines() if x.startswith("{")), None)
                if line is None:
                    raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
                rec = json.loads(line)
            print(json.dumps(rec), flush=True)
            results[system].append(rec)
    med = {s: statistics.median(r["mb_per_s"] for r in rs) for s, rs in results.items()}
    print(f"\n{args.ranks} ranks, {args.pairs} pairs of {args.mb:g} MB arrays, medians of {args.rounds} rounds\n")
    print("| system | MB/s producer to consumer | vs mpi4py.futures |")
    print("|---|---:|---:|")
    for s in SYSTEMS:
        print(f"| {LABELS[s]} | {med[s]:,.0f} | {med[s] / med['mpi4py']:.2f}x |")


if __name__ == "__main__":
    main()
