"""UTS at scale: the published T3 and a deep binomial tree, one run, every system.

Everything in one go (each system its own launch, measuring a copy of the
committed hpcmicro; ~4 minutes on 2 cores), printing the section as Markdown
and, with ``--doc``, writing it into docs/benchmarks.md (markers ``uts-scale``)::

    python benchmarks/bench_uts.py --all              # print the results as Markdown
    python benchmarks/bench_uts.py --all --doc        # ... and write them into docs/benchmarks.md
    python benchmarks/bench_uts.py --from-results bench-out/bench_uts.jsonl --doc   # re-render, run nothing

One system per launch (what ``--all`` runs; each prints one JSON line per tree)::

    python benchmarks/bench_uts.py --system serial                 # (a) a plain Python loop, one core
    python benchmarks/bench_uts.py --system hpcmicro-1 --trees GEO_D8,BIN_200_S2   # (b) one process
    mpiexec -n 3 python benchmarks/bench_uts.py --system hpcmicro  # (b) 1 master + 2 workers
    mpiexec -n 3 python -m mpi4py.futures benchmarks/bench_uts.py --system executor   # (c) ~5 min
    python benchmarks/bench_uts.py --system dask --workers 2       # (d) small tree only

(a) **serial loop**: a list used as a stack, ``uts.children`` on every node
(what ``uts.count_kernel`` calls), a count: the reference every ratio divides.
(b) **hpcmicro**: ``rt.map_reduce(partial(uts.count_kernel, params), [uts.root(params)],
op="sum", root=0)``: one root task, every node a task spawned by its parent.
(c) **MPIPoolExecutor**: its tasks cannot submit tasks, so the tree is walked
level by level (``bench_tree.bfs_count``: one ``executor.map(common.uts_children,
frontier, chunksize=c)`` per level), at each of ``--chunksizes``; the best is
its figure. (d) **Dask**: tasks submitting tasks (``common.uts_count_dask``,
``worker_client``), on a tree small enough for it.

Every count is checked exactly against the node count measured here with
``uts.serial_stats`` (in ``TREES``) and, for T3, against the published count
(``uts.PUBLISHED_NODES``); the driver also checks it against the serial loop of
the same run. A mismatch is printed as **WRONG** and makes ``--all`` exit 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from benchmarks.common import emit, parse_chunksizes  # noqa: E402
from benchmarks.run_all import f_rate, launch_commands  # noqa: E402
from hpcmicro.kernels import uts  # noqa: E402

_now = time.perf_counter
RERUN = "python benchmarks/bench_uts.py --all --doc"
SECTION = "uts-scale"  # the docsection markers
DEFAULT_OUT = os.path.join(REPO, "bench-out", "bench_uts.jsonl")


@dataclasses.dataclass(frozen=True)
class Tree:
    params: uts.UTSParams
    nodes: int  # exact, from uts.serial_stats here
    depth: int
    what: str
    published: int | None = None


TREES = {
    # The published binomial tree (-t 0 -b 2000 -q 0.124875 -m 8 -r 42): 2000 root children, then 8 children
    # with probability q (q*m = 0.999): many small subtrees and a few very deep ones.
    "T3": Tree(uts.T3, 4_112_897, 1572, "binomial, b0=2000, q=0.124875, m=8, seed 42 (published T3)",
               uts.PUBLISHED_NODES["T3"]),
    # T3's parameters with 200 root children; seed 42 gives the same root, so this is the first 200 of T3's
    # subtrees, including its deepest (depth 1572): 2.7 M nodes, long thin chains (seeds 0-94 tried here:
    # the next largest, seed 51, has 683,569 nodes).
    "BIN_200_S42": Tree(uts.UTSParams(tree_type=uts.BIN, b0=200.0, q=0.124875, m=8, root_seed=42),
                        2_745_281, 1572, "binomial, b0=200, q=0.124875, m=8, seed 42 (deep)"),
    # T1 cut at depth 8 (T1 is depth 10): bushy and shallow, for the one-process figure.
    "GEO_D8": Tree(dataclasses.replace(uts.T1, gen_mx=8), 257_042, 8,
                   "geometric (fixed), b0=4, depth 8, seed 19 (T1 to depth 8)"),
    # Small enough for Dask (a few hundred tasks per second here), same binomial parameters.
    "BIN_200_S2": Tree(uts.UTSParams(tree_type=uts.BIN, b0=200.0, q=0.124875, m=8, root_seed=2),
                       2_409, 18, "binomial, b0=200, q=0.124875, m=8, seed 2 (small)"),
}
ALL_TREES = "T3,BIN_200_S42,GEO_D8,BIN_200_S2"
ONE_PROCESS_TREES = "GEO_D8,BIN_200_S2"  # --all: hpcmicro-1 (T3 would take minutes in one process)
DASK_TREES = "BIN_200_S2"
EXECUTOR_CHUNKSIZES = "16,128,1024"  # trees under BIG nodes
# Trees of BIG nodes or more: two chunksizes only (each walk of T3 takes ~1-2 minutes here). Neither end
# wins reliably: small chunks balance the narrow levels of a deep binomial tree over both workers, one
# chunk per level saves messages (a pilot on a 683,569-node binomial tree: 64 -> 30 k nodes/s,
# 512 -> 25 k, 4096 -> 38 k).
EXECUTOR_BIG_CHUNKSIZES = "64,4096"
BIG = 1_000_000
SYSTEMS = ("serial", "hpcmicro-1", "hpcmicro", "executor", "dask")


def serial_loop(params) -> int:
    """(a) The plain loop: a list as a stack, the kernel's node function, a count."""
    children = uts.children
    stack = [uts.root(params)]
    pop, extend = stack.pop, stack.extend
    nodes = 0
    while stack:
        node = pop()
        nodes += 1
        extend(children(params, node))
    return nodes


def record(name, count, wall, system, config, workers, processes, **extra):
    tree = TREES[name]
    rec = {
        "bench": "uts_scale", "tree": name, "system": system, "config": config, "workers": workers,
        "processes": processes, "nodes": count, "expected_nodes": tree.nodes, "published_nodes": tree.published,
        "verified": count == tree.nodes and (tree.published is None or count == tree.published),
        "wall_s": wall, "nodes_per_s": count / wall,
    }
    rec.update(extra)
    emit(rec)
    if not rec["verified"]:
        print(f"WRONG COUNT: {config} on {name}: {count} nodes, expected {tree.nodes}"
              + (f" (published {tree.published})" if tree.published else ""), file=sys.stderr, flush=True)


def run_serial(args):
    serial_loop(uts.DEFAULT)  # warm-up
    for name in args.trees.split(","):
        t0 = _now()
        count = serial_loop(TREES[name].params)
        record(name, count, _now() - t0, "serial", "serial Python loop", 1, 1)


def run_hpcmicro(args):
    import hpcmicro as hm

    with hm.Runtime(policy=args.policy) as rt:
        if args.system == "hpcmicro-1" and rt.size != 1:
            raise SystemExit("--system hpcmicro-1 runs in one process: plain python, no mpiexec")
        workers = rt.size - 1 if rt.size > 1 else 1
        label = f"hpcmicro {args.policy}, " + ("1 process (in-process worker)" if rt.size == 1
                                               else f"{rt.size} ranks (1 master + {workers} workers)")
        warm = uts.DEFAULT
        rt.map_reduce(functools.partial(uts.count_kernel, warm), [uts.root(warm)], op="sum", root=0)
        for name in args.trees.split(","):
            params = TREES[name].params
            t0 = _now()
            count = rt.map_reduce(functools.partial(uts.count_kernel, params), [uts.root(params)], op="sum", root=0)
            wall = _now() - t0
            if rt.is_master:
                st = rt.stats
                record(name, count, wall, "hpcmicro-1" if rt.size == 1 else "hpcmicro", label, workers, rt.size,
                       policy=args.policy, steals=getattr(st, "steals", None), tasks=getattr(st, "tasks", None),
                       runtime_efficiency=getattr(st, "efficiency", None))


def run_executor(args):
    from mpi4py import MPI
    from mpi4py.futures import MPIPoolExecutor

    from benchmarks.bench_tree import bfs_count

    size = MPI.COMM_WORLD.Get_size()
    with MPIPoolExecutor() as ex:
        bfs_count(ex, uts.DEFAULT, 16)  # warm-up
        for name in args.trees.split(","):
            sizes = args.big_chunksizes if TREES[name].nodes >= BIG else args.chunksizes
            for c in parse_chunksizes(sizes):
                t0 = _now()
                count, levels = bfs_count(ex, TREES[name].params, c)
                record(name, count, _now() - t0, "executor", f"MPIPoolExecutor level by level, chunksize={c}",
                       size - 1, size, chunksize=c, levels=levels)


def run_dask(args):
    from benchmarks.common import dask_client, uts_count_dask

    with dask_client(args.workers) as client:
        warm = dataclasses.replace(uts.SMALL_GEO, gen_mx=2)  # a few dozen nodes: the warm-up
        client.submit(uts_count_dask, warm, uts.root(warm), pure=False).result()  # warm-up
        for name in args.trees.split(","):
            params = TREES[name].params
            t0 = _now()
            count = client.submit(uts_count_dask, params, uts.root(params), pure=False).result()
            record(name, count, _now() - t0, "dask", f"Dask tasks submitting tasks, {args.workers} workers",
                   args.workers, args.workers + 1)


# --------------------------------------------------------------------------------------
# The driver: every system, one launch each, then the table


def snapshot(tag: str) -> str:
    """A private copy of the committed hpcmicro (git HEAD) and of the current benchmarks/*.py.

    Launches run there, so one run measures one commit even while others edit the
    working tree; a fresh folder per run, so concurrent runs never share one.
    """
    from benchmarks.run_all import make_snapshot

    os.makedirs(os.path.join(REPO, "bench-out"), exist_ok=True)
    return make_snapshot(tempfile.mkdtemp(prefix=f"snapshot-{tag}-", dir=os.path.join(REPO, "bench-out")))


def git_head() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip()


def launch_facts(root: str, live: bool) -> dict:
    from benchmarks.run_all import machine_facts

    facts = machine_facts()
    head = git_head()
    facts["commit"] = facts["commit"] if live else head
    facts["measured"] = "the working tree (--live)" if live else f"a copy of hpcmicro/ at git HEAD ({head})"
    return facts


def run_launches(configs, args, tag):
    """Run ``configs`` ((system, argv, timeout)) ``args.repeats`` times, rounds interleaved.

    Returns (records, launches, facts).
    """
    from benchmarks.run_all import display, run_one, wait_for_quiet

    root = REPO if args.live else snapshot(tag)
    facts = launch_facts(root, args.live)
    records, launches = [], []
    log_path = os.path.join(REPO, "bench-out", f"{tag}.log")
    t_start = _now()
    try:
        with open(log_path, "w") as log:
            for rnd in range(1, args.repeats + 1):
                for system, argv, timeout in configs:
                    busy = wait_for_quiet(args.quiet_wait)
                    rc, recs, elapsed = run_one(argv, timeout, log, args.nice, root)
                    text = display(argv)
                    for r in recs:
                        r.update(round=rnd, command=text)
                        if not r.get("hpcmicro_file", "").startswith(root):
                            print(f"WARNING: measured {r.get('hpcmicro_file')}, not the copy under {root}",
                                  flush=True)
                    records.extend(recs)
                    launches.append({"launch": True, "system": system, "command": text, "round": rnd, "rc": rc,
                                     "elapsed_s": elapsed, "cpu_busy_before": busy})
                    print(f"[{_now() - t_start:5.0f}s] round {rnd} {text}: rc={rc}, {len(recs)} results, "
                          f"{elapsed:.1f}s (CPU {busy:.0%} busy before)", file=sys.stderr, flush=True)
    finally:
        if not args.live:
            shutil.rmtree(root, ignore_errors=True)
    facts["suite_s"] = _now() - t_start
    facts["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    facts["nice"] = args.nice
    if any(x["rc"] != 0 for x in launches):
        print(f"some launches failed: see {log_path}", file=sys.stderr, flush=True)
    return records, launches, facts


def save(path, facts, launches, records, command):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(json.dumps({"command": command, "facts": facts}) + "\n")
        for r in launches + records:
            f.write(json.dumps(r, sort_keys=True) + "\n")


def load(path):
    with open(path) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    head = lines[0]
    launches = [r for r in lines[1:] if r.get("launch")]
    records = [r for r in lines[1:] if not r.get("launch")]
    return head["command"], head["facts"], launches, records


def f_ratio(x):
    return f"{x:.2f}x" if x >= 0.1 else f"{x:.2g}x"


def machine_line(facts) -> str:
    return (f"{facts.get('cpu', '?')}, `nproc` = {facts.get('nproc', '?')}, {facts.get('memory', '?')}, "
            f"Linux {facts.get('kernel', '?')}")


def software_line(facts) -> str:
    return (f"hpcmicro at commit `{facts.get('commit', '?')}` (measured: {facts.get('measured', '?')}); "
            f"Python {facts.get('python')}; mpi4py {facts.get('mpi4py')}; MPI: {facts.get('mpi_library', '?')}; "
            f"dask {facts.get('dask')}, distributed {facts.get('distributed')}")


def busy_line(launches) -> str:
    busy = [x["cpu_busy_before"] for x in launches]
    if not busy:
        return ""
    return (f"CPU use by other processes just before the launches: median {statistics.median(busy):.0%}, "
            f"max {max(busy):.0%} ({sum(b > 0.2 for b in busy)} of {len(busy)} launches started above 20%).")


def check_cell(r_nodes, tree: Tree, serial_nodes) -> str:
    ok = r_nodes == tree.nodes and (serial_nodes is None or r_nodes == serial_nodes)
    if tree.published is not None:
        ok = ok and r_nodes == tree.published
    if not ok:
        return f"**WRONG: {r_nodes:,}**"
    return "= serial" + (" = published" if tree.published is not None else "")


def render(command, facts, launches, records) -> tuple[str, bool]:
    """The Markdown section, and whether every count was right."""
    by = {}
    for r in records:
        by.setdefault((r["tree"], r["config"]), []).append(r)
    all_ok = all(r["nodes"] == TREES[r["tree"]].nodes and r.get("verified", True) for r in records)
    repeats = max((x["round"] for x in launches), default=1)
    cmds, failed = launch_commands(launches)
    w = []
    w.append("## UTS at scale: T3 and a deep binomial tree (issue 11: spawn-heavy jobs)")
    w.append("")
    w.append("Node counting on big Unbalanced Tree Search trees, every system in the same run: (a) a plain serial "
             "Python loop (a list as a stack, `uts.children` per node: what `uts.count_kernel` calls), the "
             "reference every ratio divides; (b) hpcmicro, one root task and a spawned task per node, "
             "`map_reduce(op=\"sum\")`, on 1 master + 2 worker ranks and, on the smaller trees, in one process "
             "(plain `python`, the in-process worker); (c) `mpi4py.futures.MPIPoolExecutor`, whose tasks cannot "
             "submit tasks: the tree is walked level by level, one `executor.map(children, frontier, "
             "chunksize=c)` per level (`bench_tree.bfs_count`), at a few chunksizes (two on the big trees: each "
             "walk takes minutes), every one shown, the best marked; (d) Dask, tasks submitting tasks "
             "(`common.uts_count_dask`), on the small tree only (a few hundred tasks per second). "
             "Counts are checked exactly against `uts.serial_stats` (measured here, in `bench_uts.TREES`), "
             "against the serial loop of the same run and, for T3, against the published count.")
    w.append("")
    w.append(f"- Rerun and rewrite this section: `{RERUN}` (about {facts.get('suite_s', 0) / 60:.0f} min here).")
    w.append(f"- Command: `{command}`; the launches it ran (each {repeats} time(s), rounds interleaved"
             + ("; medians, range in parentheses" if repeats > 1 else "") + "):")
    w.append("")
    w.append("```")
    w.extend(cmds)
    w.append("```")
    w.append("")
    w.append(f"- Machine: {machine_line(facts)}; run {facts.get('date', '?')}; took "
             f"{facts.get('suite_s', 0) / 60:.1f} min. **2 cores**: the 3-rank runs (1 master + 2 workers) "
             "and Dask (2 workers + the client's scheduler) oversubscribe them.")
    w.append(f"- Software: {software_line(facts)}.")
    w.append("- The engine is being optimized concurrently: these figures are for the commit named above. "
             "Env of every launch: " + " ".join(f"`{k}={v}`" for k, v in sorted(_mpich_env().items()))
             + (f"; every launch under `nice -n {facts['nice']}`" if facts.get("nice") else "") + ".")
    busy = busy_line(launches)
    if busy:
        w.append(f"- {busy}")
    if failed:
        w.append("- **Failed launches**: " + "; ".join(f"`{c}`" for c in failed))
    w.append("")
    w.append("| tree | what | nodes (exact) | published | depth |")
    w.append("|---|---|---:|---:|---:|")
    for name, t in TREES.items():
        if any(r["tree"] == name for r in records):
            pub = f"{t.published:,}" if t.published else "–"
            w.append(f"| {name} | {t.what} | {t.nodes:,} | {pub} | {t.depth} |")
    for name, t in TREES.items():
        rows = [(cfg, rs) for (tn, cfg), rs in by.items() if tn == name]
        if not rows:
            continue
        serial = [r for cfg, rs in rows for r in rs if r["system"] == "serial"]
        serial_rate = statistics.median(r["nodes_per_s"] for r in serial) if serial else None
        serial_nodes = serial[0]["nodes"] if serial else None
        w.append("")
        w.append(f"### {name}: {t.nodes:,} nodes, depth {t.depth}")
        w.append("")
        w.append("| system | processes | nodes/s | wall s | vs serial loop | count |")
        w.append("|---|---:|---:|---:|---:|---|")
        order = {s: i for i, s in enumerate(SYSTEMS)}
        best_ex = None
        for cfg, rs in rows:
            if rs[0]["system"] == "executor":
                m = statistics.median(r["nodes_per_s"] for r in rs)
                if best_ex is None or m > best_ex[1]:
                    best_ex = (cfg, m)
        for cfg, rs in sorted(rows, key=lambda x: (order.get(x[1][0]["system"], 9), x[1][0].get("chunksize", 0))):
            rates = [r["nodes_per_s"] for r in rs]
            walls = [r["wall_s"] for r in rs]
            rate = statistics.median(rates)
            span = f" ({f_rate(min(rates))} – {f_rate(max(rates))})" if len(rs) > 1 else ""
            ratio = f_ratio(rate / serial_rate) if serial_rate else "–"
            label = cfg + (" (best)" if best_ex and cfg == best_ex[0] and len(
                [1 for c, x in rows if x[0]["system"] == "executor"]) > 1 else "")
            if rs[0]["system"] == "hpcmicro" or rs[0]["system"] == "hpcmicro-1":
                steals = statistics.median(r.get("steals") or 0 for r in rs)
                label += f"; {steals:.0f} steals" if rs[0]["processes"] > 1 else ""
            if rs[0]["system"] == "executor":
                label += f"; {rs[0].get('levels')} levels"
            checks = {check_cell(r["nodes"], t, serial_nodes) for r in rs}
            w.append(f"| {label} | {rs[0]['processes']} | {f_rate(rate)}{span} | {statistics.median(walls):.2f} | "
                     f"{ratio} | {', '.join(sorted(checks))} |")
    w.append("")
    if not all_ok:
        w.append("**A node count was wrong** (see the count column).")
    else:
        published = sorted({r["tree"] for r in records if TREES[r["tree"]].published})
        w.append(f"Every count ({len(records)} measurements) equals the exact count and the serial loop's"
                 + "".join(f"; {t}: the published {TREES[t].published:,}" for t in published) + ".")
    return "\n".join(w), all_ok


def _mpich_env():
    from hpcmicro.constants import MPICH_ENV

    return MPICH_ENV


def configs(args):
    py = sys.executable
    s = "benchmarks/bench_uts.py"
    trees = args.trees
    dask_trees = ",".join(t for t in DASK_TREES.split(",") if t in trees.split(","))
    one = ",".join(t for t in ONE_PROCESS_TREES.split(",") if t in trees.split(",")) or trees
    out = [
        ("serial", [py, s, "--system", "serial", "--trees", trees], 600),
        ("hpcmicro-1", [py, s, "--system", "hpcmicro-1", "--trees", one], 600),
        ("hpcmicro", ["mpiexec", "-n", "3", py, s, "--system", "hpcmicro", "--trees", trees], 600),
        ("executor", ["mpiexec", "-n", "3", py, "-m", "mpi4py.futures", s, "--system", "executor", "--trees", trees,
                      "--chunksizes", args.chunksizes, "--big-chunksizes", args.big_chunksizes], 1200),
    ]
    if dask_trees:
        out.append(("dask", [py, s, "--system", "dask", "--workers", "2", "--trees", dask_trees], 600))
    return [c for c in out if c[0] in args.systems.split(",")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", choices=SYSTEMS, help="run one system (one launch)")
    p.add_argument("--all", action="store_true", help="run every system, one launch each, and print the section")
    p.add_argument("--from-results", metavar="JSONL", help="re-render the section from a saved run, run nothing")
    p.add_argument("--doc", action="store_true", help="with --all/--from-results: write the section into "
                                                      "docs/benchmarks.md (markers uts-scale)")
    p.add_argument("--trees", default=None, help=f"comma-separated, of {', '.join(TREES)} (default: {ALL_TREES}; "
                                                 f"dask: {DASK_TREES})")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="--all only: which systems to launch")
    p.add_argument("--chunksizes", default=EXECUTOR_CHUNKSIZES,
                   help=f"executor only: chunksizes on trees of fewer than {BIG:,} nodes")
    p.add_argument("--big-chunksizes", default=EXECUTOR_BIG_CHUNKSIZES,
                   help=f"executor only: chunksizes on trees of {BIG:,} nodes or more")
    p.add_argument("--policy", default="steal", choices=("steal", "static"), help="hpcmicro only")
    p.add_argument("--workers", type=int, default=2, help="dask only: worker processes")
    p.add_argument("--repeats", type=int, default=1, help="--all only: rounds, interleaved")
    p.add_argument("--quiet-wait", type=float, default=10.0,
                   help="--all only: before each launch, wait up to this long for the CPUs to be < 20%% busy")
    p.add_argument("--nice", type=int, default=0, help="--all only: run every launch under `nice -n NICE`")
    p.add_argument("--live", action="store_true", help="--all only: measure the working tree, not git HEAD")
    p.add_argument("--out", default=DEFAULT_OUT, help="--all only: where the raw records go")
    args = p.parse_args(argv)
    if args.trees is None:
        args.trees = DASK_TREES if args.system == "dask" else ALL_TREES
    for name in args.trees.split(","):
        if name not in TREES:
            p.error(f"unknown tree {name!r}: one of {', '.join(TREES)}")

    if args.from_results:
        command, facts, launches, records = load(args.from_results)
    elif args.all:
        command = "python benchmarks/bench_uts.py" + "".join(f" {a}" for a in (argv if argv is not None
                                                                                else sys.argv[1:]))
        records, launches, facts = run_launches(configs(args), args, "uts")
        save(args.out, facts, launches, records, command)
    elif args.system:
        {"serial": run_serial, "hpcmicro-1": run_hpcmicro, "hpcmicro": run_hpcmicro, "executor": run_executor,
         "dask": run_dask}[args.system](args)
        return 0
    else:
        p.error("give --system, --all or --from-results")
    text, ok = render(command, facts, launches, records)
    print(text)
    if args.doc:
        from benchmarks.docsection import write_section

        write_section(SECTION, text)
        print(f"wrote section {SECTION!r} of docs/benchmarks.md", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
