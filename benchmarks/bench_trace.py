"""What tracing costs: no-op throughput with ``trace=`` against without, side by side.

    python benchmarks/bench_trace.py [--tasks 400000] [--repeats 5] [--doc]

Each run is its own ``mpiexec -n 3`` (1 master + 2 workers); runs alternate
(off, on, off, on, ...) so that a noisy machine hits both alike; the table
reports medians and the ratio. Target: tracing costs at most 5%.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)  # this checkout's hpcmicro (also when run_all.py measures a copy of it)

from hpcmicro.constants import MPICH_ENV  # noqa: E402


def noop(x):
    return None


def job(tasks: int, trace: str | None) -> None:
    import hpcmicro as hm

    with hm.Runtime(trace=trace, progress=False) as rt:
        rt.map(noop, hm.Range(1000, 1), root=0)  # warm-up
        t0 = time.perf_counter()
        rt.map(noop, hm.Range(tasks, 1), root=0)
        wall = time.perf_counter() - t0
        if rt.rank == 0:
            print(json.dumps({"trace": bool(trace), "tasks": tasks, "wall": wall, "rate": tasks / wall}), flush=True)


def run(tasks, trace):
    env = dict(os.environ, **MPICH_ENV, PYTHONPATH=REPO)
    argv = ["mpiexec", "-n", "3", sys.executable, __file__, "--job", "--tasks", str(tasks)]
    if trace:
        argv += ["--trace-file", trace]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=True)
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][0])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--job", action="store_true")
    parser.add_argument("--tasks", type=int, default=400_000)
    parser.add_argument("--trace-file")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--doc", action="store_true")
    args = parser.parse_args()
    if args.job:
        return job(args.tasks, args.trace_file)
    off, on = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            off.append(run(args.tasks, None)["rate"])
            on.append(run(args.tasks, os.path.join(tmp, f"t{r}.json"))["rate"])
    m_off, m_on = statistics.median(off), statistics.median(on)
    text = "\n".join([
        "## Tracing cost (issue: observability)",
        "",
        f"Command: `python benchmarks/bench_trace.py --doc` ({args.tasks} no-op tasks, `hm.Range(n, 1)`, "
        f"1 master + 2 workers, {args.repeats} alternating runs each, median). Machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}.",
        "",
        "| tracing | tasks/s (median) | runs |",
        "| --- | --- | --- |",
        f"| off | {m_off:,.0f} | {', '.join(f'{x:,.0f}' for x in off)} |",
        f"| on (`trace=`) | {m_on:,.0f} | {', '.join(f'{x:,.0f}' for x in on)} |",
        "",
        f"Tracing costs {(1 - m_on / m_off) * 100:.1f}% of no-op throughput (target: at most 5%).",
    ])
    print(text)
    if args.doc:
        sys.path.insert(0, HERE)
        from docsection import write_section

        write_section("trace", text)


if __name__ == "__main__":
    main()
