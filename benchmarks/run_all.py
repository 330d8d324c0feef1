"""Run every benchmark configuration side by side and write docs/benchmarks.md.

    python benchmarks/run_all.py --nice -20 --quiet-wait 20   # the full suite, ~6 minutes on 2 quiet cores
    python benchmarks/run_all.py --repeats 1 --only throughput --no-doc   # a quick look
    python benchmarks/run_all.py --from-results   # rewrite the doc from results/latest.jsonl

Each configuration is its own ``mpiexec -n N python ...`` subprocess (1 master
+ N-1 workers), with a timeout. Repeats are interleaved (round 1 of every
configuration, then round 2, ...) so that slow drifts of a noisy machine hit
every system alike; tables report the median over the repeats, with the range.

The launches run in ``bench-out/snapshot``: a copy of the committed
``hpcmicro/`` (``git archive HEAD``) and of these scripts, so one run measures
one version of the runtime even while others edit the working tree (``--live``
measures the working tree instead). Before each launch the suite waits up to
``--quiet-wait`` seconds for the CPUs to be idle and records how busy they
were; ``--nice -20`` (as root) shields the launches from other processes.

Every JSON line the scripts print is kept in ``benchmarks/results/latest.jsonl``
(with the round and the command that produced it). The doc is rewritten from
them, except the hand-written part between the ``analysis`` markers, which is
carried over from the existing doc.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

DOC = os.path.join(REPO, "docs", "benchmarks.md")
RESULTS = os.path.join(HERE, "results", "latest.jsonl")
MPI_ENV = {"MPIR_CVAR_CH4_PROGRESS_THROTTLE": "true", "MPIR_CVAR_POLLS_BEFORE_YIELD": "1"}
ANALYSIS_BEGIN = "<!-- analysis:begin (hand-written; run_all.py keeps this part) -->"
ANALYSIS_END = "<!-- analysis:end -->"

THROUGHPUT_CS = "1,16,256,4096"
IRREGULAR_CS = "1,2,4,8,16,32"
TREE_CS = "1,16,256,4096"


def configs(args):
    """(bench, ranks, system, argv, timeout) for every configuration."""
    out = []

    def add(bench, ranks, script, system, extra, timeout):
        if system == "executor":
            argv = ["mpiexec", "-n", str(ranks), sys.executable, "-m", "mpi4py.futures",
                    f"benchmarks/{script}", "--system", "executor"] + extra
        else:
            argv = ["mpiexec", "-n", str(ranks), sys.executable, f"benchmarks/{script}", "--system", system]
        out.append((bench, ranks, system, argv, timeout))

    if "throughput" in args.only:
        for workers in args.throughput_workers:
            for system in ("steal", "static"):
                add("throughput", workers + 1, "bench_throughput.py", system, [], 120)
            add("throughput", workers + 1, "bench_throughput.py", "executor", ["--chunksizes", THROUGHPUT_CS], 180)
    if "irregular" in args.only:
        for workers in args.workers:
            for system in ("steal", "static"):
                add("irregular", workers + 1, "bench_irregular.py", system, [], 120)
            add("irregular", workers + 1, "bench_irregular.py", "executor", ["--chunksizes", IRREGULAR_CS], 240)
    if "tree" in args.only:
        for workers in args.workers:
            for system in ("steal", "static"):
                add("tree", workers + 1, "bench_tree.py", system, [], 120)
            add("tree", workers + 1, "bench_tree.py", "executor", ["--chunksizes", TREE_CS], 240)
    return out


def display(argv):
    """The command as a person would type it (python, not the interpreter's full path)."""
    return " ".join("python" if a == sys.executable else shlex.quote(a) for a in argv)


def cpu_busy(interval=0.5):
    """Fraction of the machine's CPU time that was busy over ``interval`` seconds (Linux)."""

    def sample():
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return sum(vals), idle

    try:
        t0, i0 = sample()
        time.sleep(interval)
        t1, i1 = sample()
    except OSError:
        return 0.0
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_for_quiet(max_wait, threshold=0.2):
    """Wait (at most ``max_wait`` s) until other processes leave the CPUs alone.

    Returns the busy fraction seen last: recorded with the launch, so that a
    number measured on a busy machine can be recognized as such.
    """
    deadline = time.perf_counter() + max_wait
    busy = cpu_busy()
    while busy > threshold and time.perf_counter() < deadline:
        time.sleep(2.0)
        busy = cpu_busy()
    return busy


def make_snapshot():
    """Copy the committed hpcmicro (git HEAD) and these scripts to bench-out/snapshot.

    Launches run there, so every one of them measures the same runtime even
    while others edit the working tree, and the doc can name the commit.
    """
    import shutil

    snap = os.path.join(REPO, "bench-out", "snapshot")
    shutil.rmtree(snap, ignore_errors=True)
    os.makedirs(os.path.join(snap, "benchmarks"))
    archive = subprocess.run(["git", "archive", "HEAD", "hpcmicro"], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", snap], input=archive.stdout, check=True)
    for name in os.listdir(HERE):
        if name.endswith(".py"):
            shutil.copy2(os.path.join(HERE, name), os.path.join(snap, "benchmarks", name))
    return snap


def run_one(argv, timeout, log, nice=0, root=REPO):
    if nice:
        argv = ["nice", "-n", str(nice)] + list(argv)
    env = dict(os.environ)
    env.update(MPI_ENV)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=timeout,
                              start_new_session=True)
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc = "timeout"
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    elapsed = time.perf_counter() - t0
    records = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    if rc != 0:
        log.write(f"--- {display(argv)}: rc={rc}\n{stdout[-4000:]}\n{stderr[-4000:]}\n")
        log.flush()
    return rc, records, elapsed


# --------------------------------------------------------------------------------------
# Facts


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30, cwd=REPO).stdout.strip()
    except Exception:
        return ""


def source_digest(pkg=os.path.join(REPO, "hpcmicro")):
    """A digest of hpcmicro's sources: shows whether the runtime changed during a run."""
    import hashlib

    h = hashlib.sha1()
    for root, dirs, files in sorted(os.walk(pkg)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                with open(os.path.join(root, name), "rb") as f:
                    h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()[:12]


def machine_facts():
    cpu = ""
    mem = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                    break
    except OSError:
        pass
    from benchmarks.common import versions

    v = versions()
    head = sh("git rev-parse --short HEAD")
    dirty = sh("git status --porcelain --untracked-files=no -- hpcmicro")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": sh("nproc") or str(os.cpu_count()),
        "cpu": cpu or platform.processor(),
        "memory": mem,
        "kernel": platform.release(),
        "commit": head + (" (hpcmicro/ has uncommitted changes)" if dirty else ""),
        "source_digest": source_digest(),
        **v,
    }


# --------------------------------------------------------------------------------------
# Aggregation


def med(values):
    return statistics.median(values) if values else float("nan")


def group(records, bench, **match):
    out = {}
    for r in records:
        if r.get("bench") != bench or any(r.get(k) != v for k, v in match.items()):
            continue
        out.setdefault(r["config"], []).append(r)
    return out


def span(values, fmt):
    if len(values) < 2:
        return ""
    return f" ({fmt(min(values))} – {fmt(max(values))})"


def f_rate(x):
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.0f}"


def f_s(x):
    return f"{x:.3f}"


def f_eff(x):
    return f"{x:.2f}"


def best_executor(groups, key, better):
    """(config, median) of the best MPIPoolExecutor chunksize, by median of ``key``."""
    best = None
    for cfg, rs in groups.items():
        if not cfg.startswith("MPIPoolExecutor"):
            continue
        m = med([r[key] for r in rs])
        if best is None or better(m, best[1]):
            best = (cfg, m)
    return best


def order_configs(groups):
    def key(cfg):
        if cfg.startswith("hpcmicro steal"):
            return (0, cfg)
        if cfg.startswith("hpcmicro static"):
            return (1, cfg)
        return (2, int(cfg.rsplit("=", 1)[1]) if "=" in cfg else 0)

    return sorted(groups, key=key)


# --------------------------------------------------------------------------------------
# The doc


def write_doc(records, facts, command, runs, analysis, path):
    L = []
    w = L.append
    w("# Benchmarks")
    w("")
    w("Generated by `benchmarks/run_all.py` (tables and facts; the analysis section is hand-written). "
      "Benchmarks are not timed tests: nothing here fails a build.")
    w("")
    w("## How these numbers were produced")
    w("")
    w("```")
    w(command)
    w("```")
    w("")
    w(f"- Date: {facts['date']}; hpcmicro {facts['hpcmicro']} at commit {facts['commit']}, "
      f"sources digest {facts.get('source_digest', '?')}; measured: {facts.get('measured', 'the working tree')}")
    if facts.get("source_digest_end") and facts["source_digest_end"] != facts.get("source_digest"):
        w(f"- **WARNING: hpcmicro's sources changed during the run** (digest at the end "
          f"{facts['source_digest_end']}, commit {facts.get('commit_end')}): launches may have measured different code.")
    w(f"- Machine: `nproc` = {facts['nproc']}; CPU: {facts['cpu']}; memory {facts['memory']}; Linux {facts['kernel']}")
    w(f"- Python {facts['python']}, mpi4py {facts['mpi4py']}, numpy {facts['numpy']}, "
      f"MPI: {' '.join(str(facts.get('mpi_library', '?')).split())}")
    if facts.get("nice"):
        w(f"- Every launch ran under `nice -n {facts['nice']}` (the same for every system), to shield it from "
          "other processes on this shared machine.")
    cb = facts.get("cpu_busy_before")
    if cb:
        w(f"- Other load: before each launch the suite waits (up to `--quiet-wait` s) for the CPUs to be < 20% busy; "
          f"measured just before the launches: median {cb['median']:.0%}, max {cb['max']:.0%} busy; "
          f"{cb['launches_over_20pct']} of {cb['launches']} launches started on a busier machine.")
    w("- Environment of every run: " + " ".join(f"`{k}={v}`" for k, v in MPI_ENV.items()) +
      ", `PYTHONPATH=<the measured copy>`; (b) and (c) run with 2 workers only")
    w(f"- Every configuration is its own `mpiexec` launch, repeated {command_repeats(command)} times "
      "(rounds interleaved); tables show the **median** and, in parentheses, the range over the repeats.")
    w("- `workers` = MPI ranks - 1 (rank 0 is the master for both systems). With 2 cores, "
      "**1 master + 4 workers is oversubscribed** (5 processes on 2 cores): those numbers measure "
      "time-sharing as much as scheduling.")
    w("")
    w("The launches:")
    w("")
    w("```")
    seen = set()
    for argv_text in runs:
        if argv_text not in seen:
            seen.add(argv_text)
            w(argv_text)
    w("```")
    w("")
    verdicts = []

    # (a) ----------------------------------------------------------------------------
    thr = [r for r in records if r.get("bench") == "throughput"]
    if thr:
        w("## (a) Scheduling throughput: no-op microtasks per second")
        w("")
        w("Kernel `benchmarks.common.noop` (returns None); every result goes back to the master "
          "(`rt.map(..., root=0)` / `list(executor.map(...))`). hpcmicro gets no tuning: "
          "`hm.Range(n, 1)` (payload `range(i, i+1)`, computed on the worker) and, second row, "
          "the plain list `list(range(n))` (payloads travel in messages, like the executor's). "
          "The executor maps over `range(n)`. n grows x4 from 1,000 until a call lasts >= 0.5 s "
          "(cap 1,048,576); the last call is the measurement, n is shown.")
        w("")
        worker_counts = sorted({r["workers"] for r in thr})
        head = "| system |" + "".join(f" workers={k}{' (oversubscribed)' if k > int(facts['nproc'] or 2) else ''}: tasks/s | n |" for k in worker_counts)
        w(head)
        w("|---|" + "---:|---:|" * len(worker_counts))
        by_w = {k: group(records, "throughput", workers=k) for k in worker_counts}
        cfgs = order_configs({c: None for k in worker_counts for c in by_w[k]})
        for cfg in cfgs:
            row = f"| {cfg} |"
            for k in worker_counts:
                rs = by_w[k].get(cfg, [])
                if rs:
                    rates = [r["tasks_per_s"] for r in rs]
                    row += f" {f_rate(med(rates))}{span(rates, f_rate)} | {max(r['n'] for r in rs):,} |"
                else:
                    row += " – | – |"
            w(row)
        w("")
        for k in worker_counts:
            g = by_w[k]
            best = best_executor(g, "tasks_per_s", lambda a, b: a > b)
            cs1 = g.get("MPIPoolExecutor chunksize=1")
            for cfg in ("hpcmicro steal, tasks=hm.Range(n, 1)", "hpcmicro steal, tasks=list(range(n))"):
                if cfg not in g or not cs1 or not best:
                    continue
                hm_rate = med([r["tasks_per_s"] for r in g[cfg]])
                r1 = hm_rate / med([r["tasks_per_s"] for r in cs1])
                rb = hm_rate / best[1]
                tag = " (oversubscribed; no target)" if k != 2 else ""
                w(f"- workers={k}, {cfg}: **{r1:.0f}x** MPIPoolExecutor chunksize=1, "
                  f"**{rb:.2f}x** its best ({best[0].split()[-1]}){tag}.")
                if k == 2:
                    verdicts.append((f"(a) no-op throughput, {cfg}, >= 20x executor chunksize=1",
                                     f"{r1:.0f}x", r1 >= 20))
                    verdicts.append((f"(a) no-op throughput, {cfg}, >= executor best chunksize ({best[0].split()[-1]})",
                                     f"{rb:.2f}x", rb >= 1.0))
        w("")

    # (b) ----------------------------------------------------------------------------
    irr = [r for r in records if r.get("bench") == "irregular"]
    if irr:
        w("## (b) Irregular workloads: efficiency = ideal makespan / measured makespan")
        w("")
        w("Ideal makespan = (sum of the per-task times the kernels measured in that same call) / workers; "
          "measured makespan = wall time of the call on the master. Kernels time themselves "
          "(`time.perf_counter` around the work) and return the elapsed time, identically for every system.")
        w("")
        workloads = []
        for r in irr:
            if (r["workload"], r["workers"]) not in workloads:
                workloads.append((r["workload"], r["workers"]))
        for name, k in workloads:
            g = group(records, "irregular", workload=name, workers=k)
            desc = next(iter(g.values()))[0]["workload_desc"]
            n_tasks = next(iter(g.values()))[0]["n_tasks"]
            w(f"### {name}, workers={k}")
            w("")
            w(f"{desc}; {n_tasks} tasks.")
            w("")
            w("| system | efficiency | measured makespan s | ideal makespan s | sum of task times s |")
            w("|---|---:|---:|---:|---:|")
            for cfg in order_configs(g):
                rs = g[cfg]
                e = [r["efficiency"] for r in rs]
                w(f"| {cfg} | {f_eff(med(e))}{span(e, f_eff)} | {f_s(med([r['wall_s'] for r in rs]))} | "
                  f"{f_s(med([r['ideal_s'] for r in rs]))} | {f_s(med([r['sum_task_s'] for r in rs]))} |")
            best = best_executor(g, "efficiency", lambda a, b: a > b)
            st = g.get("hpcmicro static")
            sl = g.get("hpcmicro steal")
            w("")
            if best:
                w(f"Best MPIPoolExecutor chunksize: {best[0].split()[-1]} (efficiency {f_eff(best[1])}).")
            sums = {r["checksum"] for rs in g.values() for r in rs}
            if sums != {None}:
                w(f"Checksums of the image agree across all runs: {'yes' if len(sums) == 1 else 'NO: ' + str(sorted(sums))}.")
            w("")
            if st and sl and k == 2:
                e_st, e_sl = med([r["efficiency"] for r in st]), med([r["efficiency"] for r in sl])
                if e_st < 0.7:
                    verdicts.append((f"(b) {name}: steal efficiency >= 0.9 (static gets {e_st:.2f} < 0.7)",
                                     f"{e_sl:.2f}", e_sl >= 0.9))
                else:
                    verdicts.append((f"(b) {name}: static gets {e_st:.2f} >= 0.7, so no target; steal gets",
                                     f"{e_sl:.2f}", None))

    # (c) ----------------------------------------------------------------------------
    tree = [r for r in records if r.get("bench") == "tree"]
    if tree:
        w("## (c) Spawn-heavy tree search: UTS node count")
        w("")
        w("hpcmicro: one root task, `functools.partial(uts.count_kernel, params)` spawns every child and "
          "returns 1, `map_reduce(op=\"sum\")` counts. `static` keeps spawned tasks where they were spawned, "
          "so with a single root every node runs on one worker. MPIPoolExecutor: level-by-level BFS, "
          "one `executor.map(children, frontier, chunksize=c)` per tree level. Every count is checked "
          "against `uts.serial_stats`; the serial walk's time is the speedup reference.")
        w("")
        trees = []
        for r in tree:
            if (r["tree"], r["workers"]) not in trees:
                trees.append((r["tree"], r["workers"]))
        for name, k in trees:
            g = group(records, "tree", tree=name, workers=k)
            r0 = next(iter(g.values()))[0]
            w(f"### {r0['tree_desc']}, workers={k}")
            w("")
            w(f"{r0['expected_nodes']:,} nodes, depth {r0['max_depth']}; serial walk "
              f"{f_s(med([r['serial_s'] for rs in g.values() for r in rs]))} s.")
            w("")
            w("| system | wall s | nodes/s | speedup vs serial | count verified |")
            w("|---|---:|---:|---:|---|")
            for cfg in order_configs(g):
                rs = g[cfg]
                walls = [r["wall_s"] for r in rs]
                ok = all(r["verified"] for r in rs)
                w(f"| {cfg} | {f_s(med(walls))}{span(walls, f_s)} | {f_rate(med([r['nodes_per_s'] for r in rs]))} | "
                  f"{med([r['speedup_vs_serial'] for r in rs]):.2f} | {'yes' if ok else 'NO'} ({len(rs)} runs) |")
            best = best_executor(g, "wall_s", lambda a, b: a < b)
            if best:
                w("")
                w(f"Best MPIPoolExecutor chunksize: {best[0].split()[-1]} ({f_s(best[1])} s).")
            w("")

    # summary ------------------------------------------------------------------------
    if verdicts:
        w("## Targets (1 master + 2 workers)")
        w("")
        w("| target | measured | met |")
        w("|---|---:|---|")
        for what, value, ok in verdicts:
            w(f"| {what} | {value} | {'n/a' if ok is None else ('yes' if ok else '**no**')} |")
        w("")
    if runs and any(rc != 0 for rc in runs.values()):
        w("## Failed launches")
        w("")
        for argv_text, rc in runs.items():
            if rc != 0:
                w(f"- `{argv_text}`: {rc}")
        w("")
    w("## Analysis")
    w("")
    w(ANALYSIS_BEGIN)
    w(analysis.strip("\n") if analysis.strip() else "(none yet)")
    w(ANALYSIS_END)
    w("")
    for block in foreign_sections(path):
        w(block)
        w("")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(L))


def command_repeats(command):
    parts = command.split()
    return parts[parts.index("--repeats") + 1] if "--repeats" in parts else "3"


def foreign_sections(path):
    """Marked sections other scripts keep in the doc (``<!-- NAME:begin -->`` .. ``<!-- NAME:end -->``,
    written by ``benchmarks/docsection.py``): carried over verbatim, in their order."""
    import re

    try:
        text = open(path).read()
    except OSError:
        return []
    blocks = []
    for m in re.finditer(r"<!-- ([\w.-]+):begin -->", text):
        name = m.group(1)
        end = f"<!-- {name}:end -->"
        stop = text.find(end, m.end())
        if stop >= 0:
            blocks.append(text[m.start(): stop + len(end)])
    return blocks


def old_analysis(path):
    try:
        text = open(path).read()
    except OSError:
        return ""
    if ANALYSIS_BEGIN in text and ANALYSIS_END in text:
        return text.split(ANALYSIS_BEGIN, 1)[1].split(ANALYSIS_END, 1)[0]
    return ""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", default="throughput,irregular,tree")
    p.add_argument("--throughput-workers", default="2,4")
    p.add_argument("--workers", default="2", help="worker counts for (b) and (c)")
    p.add_argument("--quiet-wait", type=float, default=20.0,
                   help="before each launch, wait up to this many seconds for the CPUs to be < 20%% busy")
    p.add_argument("--nice", type=int, default=0,
                   help="run every launch under `nice -n NICE` (negative, as root: shields the runs from other "
                        "processes on a shared machine; the same for every system)")
    p.add_argument("--live", action="store_true",
                   help="measure the working tree's hpcmicro instead of a copy of the committed one")
    p.add_argument("--no-doc", action="store_true", help="print a summary instead of writing docs/benchmarks.md")
    p.add_argument("--from-results", action="store_true", help="rewrite the doc from results/latest.jsonl, run nothing")
    args = p.parse_args(argv)
    args.only = args.only.split(",")
    args.throughput_workers = [int(x) for x in args.throughput_workers.split(",")]
    args.workers = [int(x) for x in args.workers.split(",")]
    command = "python benchmarks/run_all.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))

    if args.from_results:
        with open(RESULTS) as f:
            lines = [json.loads(x) for x in f if x.strip()]
        meta = lines[0]
        records = [r for r in lines[1:] if "bench" in r]
        runs = {r["command"]: r["rc"] for r in lines[1:] if "launch" in r}
        write_doc(records, meta["facts"], meta["command"], runs, old_analysis(DOC), DOC)
        print(f"wrote {DOC}")
        return

    facts = machine_facts()
    if args.live:
        root = REPO
        facts["measured"] = "the working tree (--live)"
    else:
        root = make_snapshot()
        facts["measured"] = f"a copy of hpcmicro/ at git HEAD ({sh('git rev-parse --short HEAD')})"
        facts["commit"] = sh("git rev-parse --short HEAD")
        facts["source_digest"] = source_digest(os.path.join(root, "hpcmicro"))
    facts["nice"] = args.nice
    cfgs = configs(args)
    os.makedirs(os.path.join(REPO, "bench-out"), exist_ok=True)
    log = open(os.path.join(REPO, "bench-out", "run_all.log"), "w")
    records, runs, launches = [], {}, []
    t_start = time.perf_counter()
    for rnd in range(1, args.repeats + 1):
        for bench, ranks, system, argv_, timeout in cfgs:
            text = display(argv_)
            busy = wait_for_quiet(args.quiet_wait)
            rc, recs, elapsed = run_one(argv_, timeout, log, args.nice, root)
            for r in recs:
                if not r.get("hpcmicro_file", "").startswith(root):
                    print(f"WARNING: measured {r.get('hpcmicro_file')}, not the copy under {root}", flush=True)
                    facts["wrong_runtime"] = r.get("hpcmicro_file")
            for r in recs:
                r["round"] = rnd
                r["command"] = text
            records.extend(recs)
            if runs.get(text, 0) == 0:
                runs[text] = rc
            launches.append({"launch": True, "command": text, "round": rnd, "rc": rc, "elapsed_s": elapsed,
                             "cpu_busy_before": busy})
            print(f"[{time.perf_counter() - t_start:6.0f}s] round {rnd} {text}: rc={rc}, "
                  f"{len(recs)} results, {elapsed:.1f}s (CPU {busy:.0%} busy before)", flush=True)
    log.close()
    facts["source_digest_end"] = source_digest(os.path.join(root, "hpcmicro"))
    facts["commit_end"] = sh("git rev-parse --short HEAD") if args.live else facts["commit"]
    if facts["source_digest_end"] != facts["source_digest"]:
        print("WARNING: hpcmicro's sources changed during the run", flush=True)
    print(f"total {time.perf_counter() - t_start:.0f}s", flush=True)

    if args.no_doc:
        for r in records:
            print(json.dumps({k: v for k, v in r.items() if k not in ("per_worker",)}))
        return
    busy = [x["cpu_busy_before"] for x in launches]
    facts["cpu_busy_before"] = {"median": med(busy), "max": max(busy), "launches_over_20pct": sum(b > 0.2 for b in busy),
                                "launches": len(busy)}
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write(json.dumps({"command": command, "facts": facts}) + "\n")
        for r in launches + records:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    write_doc(records, facts, command, runs, old_analysis(DOC), DOC)
    print(f"wrote {DOC} and {RESULTS}")


if __name__ == "__main__":
    main()
