"""Per-call latency: ``rt.map(noop, one task per worker)`` against ``MPICommExecutor.map`` and one allreduce.

The driver launches one ``mpiexec`` per rank count (3, 8, 16 by default;
each measures a copy of the committed hpcmicro) and prints the table as
Markdown; ``--doc`` also writes it into docs/benchmarks.md (markers ``latency``)::

    python benchmarks/bench_latency.py                 # 3, 8 and 16 ranks, ~1 minute on 2 cores
    python benchmarks/bench_latency.py --doc           # ... and write the section
    python benchmarks/bench_latency.py --from-results bench-out/bench_latency.jsonl --doc   # re-render only

One launch (every rank runs it; rank 0 prints one JSON line per system)::

    mpiexec -n 8 python benchmarks/bench_latency.py --measure --calls 200 --rounds 10

In one run, on the same ranks, the same number of calls of each, in rounds
(``--calls`` / ``--rounds`` calls of each system per round; the order of the
systems rotates from round to round, so slow drifts hit all alike):

- ``rt.map(noop, tasks)``: ``tasks = list(range(size - 1))``, one no-op task
  per worker, the results delivered to every rank (the default);
- ``rt.map(noop, tasks, root=0)``: the same, results on rank 0 only;
- ``MPICommExecutor(comm, root=0)``: ``list(executor.map(noop, tasks))`` on
  rank 0 (the other ranks serve as its workers inside the ``with`` block,
  entered once per round; its first call in each block is not timed);
- ``comm.allreduce(1)``: one collective, the floor for a call that every rank
  must agree to.

Each call is timed on rank 0, calls back to back; the table gives the median
and the 90th percentile. One untimed warm-up round precedes the measurement.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from benchmarks.common import emit, noop  # noqa: E402
from benchmarks.run_all import launch_commands  # noqa: E402

_now = time.perf_counter
RERUN = "python benchmarks/bench_latency.py --doc"
SECTION = "latency"
DEFAULT_OUT = os.path.join(REPO, "bench-out", "bench_latency.jsonl")
SYSTEMS = ("hpcmicro", "hpcmicro_root0", "executor", "allreduce")
LABELS = {
    "hpcmicro": "hpcmicro `rt.map(noop, tasks)`",
    "hpcmicro_root0": "hpcmicro `rt.map(noop, tasks, root=0)`",
    "executor": "`MPICommExecutor.map`",
    "allreduce": "`comm.allreduce`",
}


def percentile(values, q):
    """The q-quantile (0..1) of ``values``, linear between order statistics."""
    xs = sorted(values)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def measure(args) -> None:
    from mpi4py import MPI
    from mpi4py.futures import MPICommExecutor

    import hpcmicro as hm

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    if size < 2:
        raise SystemExit("run under mpiexec with at least 2 ranks")
    tasks = list(range(size - 1))
    expected = [None] * len(tasks)
    times: dict[str, list[float]] = {s: [] for s in SYSTEMS}

    with hm.Runtime() as rt:
        def hpcmicro_calls(n, out, root):
            for _ in range(n):
                t0 = _now()
                res = rt.map(noop, tasks, root=root)
                dt = _now() - t0
                if rank == 0:
                    assert res == expected, res
                    out.append(dt)

        def executor_calls(n, out):
            with MPICommExecutor(comm, root=0) as ex:
                if ex is not None:
                    assert list(ex.map(noop, tasks)) == expected  # the block's first call: not timed
                    for _ in range(n):
                        t0 = _now()
                        res = list(ex.map(noop, tasks))
                        dt = _now() - t0
                        assert res == expected, res
                        out.append(dt)

        def allreduce_calls(n, out):
            for _ in range(n):
                t0 = _now()
                total = comm.allreduce(1)
                dt = _now() - t0
                assert total == size
                if rank == 0:
                    out.append(dt)

        run = {
            "hpcmicro": lambda n, out: hpcmicro_calls(n, out, None),
            "hpcmicro_root0": lambda n, out: hpcmicro_calls(n, out, 0),
            "executor": executor_calls,
            "allreduce": allreduce_calls,
        }
        per_round = max(1, args.calls // args.rounds)
        for s in SYSTEMS:  # warm-up round, not kept
            run[s](max(2, per_round // 4), [])
        for r in range(args.rounds):
            order = SYSTEMS[r % len(SYSTEMS):] + SYSTEMS[: r % len(SYSTEMS)]
            for s in order:
                run[s](per_round, times[s])

    if rank == 0:
        for s in SYSTEMS:
            ts = times[s]
            emit({"bench": "latency", "ranks": size, "workers": size - 1, "system": s, "calls": len(ts),
                  "rounds": args.rounds, "median_ms": statistics.median(ts) * 1e3,
                  "p90_ms": percentile(ts, 0.9) * 1e3, "min_ms": min(ts) * 1e3, "mean_ms": statistics.mean(ts) * 1e3})


# --------------------------------------------------------------------------------------
# The driver


def render(command, facts, launches, records) -> str:
    from benchmarks.bench_uts import busy_line, machine_line, software_line

    by: dict[int, dict[str, list[dict]]] = {}
    for r in records:
        by.setdefault(r["ranks"], {}).setdefault(r["system"], []).append(r)
    calls = max((r["calls"] for r in records), default=0)
    rounds = max((r["rounds"] for r in records), default=0)
    cmds, failed = launch_commands(launches)

    def cell(rank_count, s):
        rs = by.get(rank_count, {}).get(s)
        if not rs:
            return "–", None
        m = statistics.median(r["median_ms"] for r in rs)
        p = statistics.median(r["p90_ms"] for r in rs)
        return f"{m:.3f} / {p:.3f}", m

    w = [
        "## Per-call latency: `rt.map` of one task per worker (issue 11: spawn-heavy jobs)",
        "",
        "What one small call costs: `rt.map(noop, tasks)` with one no-op task per worker "
        "(`benchmarks.common.noop`), against `mpi4py.futures.MPICommExecutor(comm, root=0).map` of the same call, "
        "and one `comm.allreduce(1)` as the floor (a call every rank takes part in needs at least one such "
        "round). All in the same `mpiexec` run, on the same ranks: "
        f"{calls} timed calls of each, in {rounds} rounds whose order of systems rotates; every call timed on "
        "rank 0, back to back; after one untimed warm-up round. The executor's `with` block is entered once per "
        "round and its first call there is not timed.",
        "",
        f"- Rerun and rewrite this section: `{RERUN}`.",
        f"- Command: `{command}`; the launches it ran:",
        "",
        "```",
        *cmds,
        "```",
        "",
        f"- Machine: {machine_line(facts)}; run {facts.get('date', '?')}; took {facts.get('suite_s', 0):.0f} s. "
        "**2 cores**: every run oversubscribes them (3 ranks already: 1 master + 2 workers; 16 ranks: 8 per "
        "core).",
        f"- Software: {software_line(facts)}.",
        "- The engine is being optimized concurrently: these figures are for the commit named above. Env of every "
        "launch: `MPIR_CVAR_CH4_PROGRESS_THROTTLE=true` `MPIR_CVAR_POLLS_BEFORE_YIELD=1`"
        + (f"; every launch under `nice -n {facts['nice']}`" if facts.get("nice") else "") + ".",
    ]
    busy = busy_line(launches)
    if busy:
        w.append(f"- {busy}")
    if failed:
        w.append("- **Failed launches**: " + "; ".join(f"`{c}`" for c in failed))
    w += [
        "",
        "Milliseconds per call, median / 90th percentile:",
        "",
        "| ranks | hpcmicro `rt.map` ms | hpcmicro `rt.map(root=0)` ms | `MPICommExecutor.map` ms | "
        "`allreduce` ms | hpcmicro / executor | hpcmicro / allreduce |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sorted(by):
        cells = {s: cell(n, s) for s in SYSTEMS}
        hm_, ex, ar = cells["hpcmicro"][1], cells["executor"][1], cells["allreduce"][1]
        r_ex = f"{hm_ / ex:.2f}x" if hm_ and ex else "–"
        r_ar = f"{hm_ / ar:.0f}x" if hm_ and ar else "–"
        w.append(f"| {n} | {cells['hpcmicro'][0]} | {cells['hpcmicro_root0'][0]} | {cells['executor'][0]} | "
                 f"{cells['allreduce'][0]} | {r_ex} | {r_ar} |")
    w += ["", "Ratios are of the medians (hpcmicro `rt.map` with results on every rank)."]
    return "\n".join(w)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--measure", action="store_true", help="one run, under mpiexec")
    p.add_argument("--calls", type=int, default=200, help="timed calls of each system")
    p.add_argument("--rounds", type=int, default=10, help="rounds the calls are split into")
    p.add_argument("--ranks", default="3,8,16", help="driver: the rank counts, one mpiexec each")
    p.add_argument("--repeats", type=int, default=1, help="driver: launches of each rank count, interleaved")
    p.add_argument("--from-results", metavar="JSONL", help="re-render from a saved run, run nothing")
    p.add_argument("--doc", action="store_true", help="write the section into docs/benchmarks.md (markers latency)")
    p.add_argument("--quiet-wait", type=float, default=10.0,
                   help="driver: before each launch, wait up to this long for the CPUs to be < 20%% busy")
    p.add_argument("--nice", type=int, default=0, help="driver: run every launch under `nice -n NICE`")
    p.add_argument("--live", action="store_true", help="driver: measure the working tree, not git HEAD")
    p.add_argument("--out", default=DEFAULT_OUT, help="driver: where the raw records go")
    args = p.parse_args(argv)
    if args.measure:
        measure(args)
        return 0

    from benchmarks.bench_uts import load, run_launches, save

    if args.from_results:
        command, facts, launches, records = load(args.from_results)
    else:
        command = "python benchmarks/bench_latency.py" + "".join(f" {a}" for a in (argv if argv is not None
                                                                                    else sys.argv[1:]))
        configs = [(f"{n} ranks", ["mpiexec", "-n", str(n), sys.executable, "benchmarks/bench_latency.py",
                                   "--measure", "--calls", str(args.calls), "--rounds", str(args.rounds)], 600)
                   for n in (int(x) for x in args.ranks.split(","))]
        records, launches, facts = run_launches(configs, args, "latency")
        save(args.out, facts, launches, records, command)
    text = render(command, facts, launches, records)
    print(text)
    if args.doc:
        from benchmarks.docsection import write_section

        write_section(SECTION, text)
        print(f"wrote section {SECTION!r} of docs/benchmarks.md", file=sys.stderr)
    return 0 if all(x["rc"] == 0 for x in launches) else 1


if __name__ == "__main__":
    sys.exit(main())
