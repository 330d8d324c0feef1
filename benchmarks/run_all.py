"""Run every benchmark configuration side by side and write docs/benchmarks.md and its plots.

    python benchmarks/run_all.py --nice -20 --quiet-wait 20   # the full suite, ~9 minutes on 2 quiet cores
    python benchmarks/run_all.py --repeats 1 --only throughput --no-doc   # a quick look
    python benchmarks/run_all.py --from-results   # rewrite the doc and plots from results/latest.jsonl

Systems: hpcmicro (``steal`` and ``static`` policies), mpi4py.futures.MPIPoolExecutor
and dask.distributed; benchmarks: (a) ``throughput`` no-op tasks/s, (b)
``irregular`` efficiency on Mandelbrot and heavy-tailed sweeps, (c) ``tree`` UTS,
(d) ``reduce`` bitwise reproducibility of a float sum over 1, 2, 4 workers,
(e) ``scaling`` from 2 to 16 ranks.

Each configuration is its own subprocess with a timeout: ``mpiexec -n N python
...`` for hpcmicro and the executor (1 master + N-1 workers), plain ``python
... --system dask --workers W`` for Dask (a LocalCluster of W worker processes,
started and stopped inside the launch). Repeats are interleaved (round 1 of every
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

from benchmarks.common import HPCMICRO_SYSTEMS, SYSTEMS  # noqa: E402
from hpcmicro.constants import MPICH_ENV  # noqa: E402

MPI_ENV = MPICH_ENV  # the name benchmarks/compare.py imports
DOC = os.path.join(REPO, "docs", "benchmarks.md")
RESULTS = os.path.join(HERE, "results", "latest.jsonl")
ANALYSIS_BEGIN = "<!-- analysis:begin (hand-written; run_all.py keeps this part) -->"
ANALYSIS_END = "<!-- analysis:end -->"

THROUGHPUT_CS = "1,16,256,4096"
IRREGULAR_CS = "1,4,16,32"
TREE_CS = "1,16,256,4096"
DASK_TREES = "SMALL_GEO,BIN_200_Q012_S7"  # Dask reaches a few hundred nodes/s here: small trees only
BENCHES = ("throughput", "irregular", "tree", "reduce", "scaling")


def configs(args):
    """(bench, workers, system, argv, timeout) for every configuration."""
    out = []

    def add(bench, workers, script, system, extra, timeout):
        if system not in args.systems:
            return
        if system == "executor":
            argv = ["mpiexec", "-n", str(workers + 1), sys.executable, "-m", "mpi4py.futures",
                    f"benchmarks/{script}", "--system", "executor"] + extra
        elif system == "dask":
            argv = [sys.executable, f"benchmarks/{script}", "--system", "dask", "--workers", str(workers)] + extra
        else:
            argv = ["mpiexec", "-n", str(workers + 1), sys.executable, f"benchmarks/{script}", "--system", system]
            argv += extra
        out.append((bench, workers, system, argv, timeout))

    if "throughput" in args.only:
        for w in args.throughput_workers:
            for system in HPCMICRO_SYSTEMS:
                add("throughput", w, "bench_throughput.py", system, [], 120)
            add("throughput", w, "bench_throughput.py", "executor", ["--chunksizes", THROUGHPUT_CS], 180)
            add("throughput", w, "bench_throughput.py", "dask", [], 180)
    if "irregular" in args.only:
        for w in args.workers:
            for system in HPCMICRO_SYSTEMS:
                add("irregular", w, "bench_irregular.py", system, [], 120)
            add("irregular", w, "bench_irregular.py", "executor", ["--chunksizes", IRREGULAR_CS], 240)
            add("irregular", w, "bench_irregular.py", "dask", [], 180)
    if "tree" in args.only:
        for w in args.workers:
            for system in HPCMICRO_SYSTEMS:
                add("tree", w, "bench_tree.py", system, [], 120)
            add("tree", w, "bench_tree.py", "executor", ["--chunksizes", TREE_CS], 240)
            add("tree", w, "bench_tree.py", "dask", ["--trees", DASK_TREES], 240)
    if "reduce" in args.only:
        for w in args.reduce_workers:
            for system in SYSTEMS:
                add("reduce", w, "bench_reduce.py", system, [], 180)
    if "scaling" in args.only:
        for ranks in args.scaling_ranks:
            for system in args.scaling_systems:
                add("scaling", ranks - 1, "bench_scaling.py", system, [], 240)
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


def make_snapshot(snap: str | None = None):
    """Copy the committed hpcmicro (git HEAD) and these scripts to ``snap`` (default bench-out/snapshot).

    Launches run there, so every one of them measures the same runtime even
    while others edit the working tree, and the doc can name the commit.
    """
    import shutil

    if snap is None:
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
    env.update(MPICH_ENV)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
        try:
            os.killpg(proc.pid, 9)  # the launch's own session: mpiexec, its ranks, Dask's worker processes
        except OSError:
            pass
        stdout, stderr = proc.communicate()
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


def source_digest(pkg=None):
    """A digest of hpcmicro's sources (default: this checkout's): shows whether the runtime changed during a run."""
    import hashlib

    pkg = pkg or os.path.join(REPO, "hpcmicro")
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


def launch_commands(launches) -> tuple[list, list]:
    """The distinct commands of a driver's launch records, in order, and those that failed."""
    cmds: list = []
    for x in launches:
        if x["command"] not in cmds:
            cmds.append(x["command"])
    return cmds, sorted({x["command"] for x in launches if x["rc"] != 0})


def f_s(x):
    return f"{x:.3f}"


def f_eff(x):
    return f"{x:.2f}"


# --------------------------------------------------------------------------------------
# The doc


SYSTEM_ORDER = {"hpcmicro steal": 0, "hpcmicro static": 1, "MPIPoolExecutor": 2, "Dask": 3}


def config_key(cfg):
    import re

    rank = next((v for k, v in SYSTEM_ORDER.items() if cfg.startswith(k)), 9)
    m = re.search(r"chunksize=(\d+)", cfg)
    return (rank, int(m.group(1)) if m else 0)


def order_configs(groups):
    first = {cfg: i for i, cfg in enumerate(groups)}
    return sorted(groups, key=lambda cfg: (config_key(cfg), first[cfg]))


def best_of(groups, key, better, prefix):
    """(config, median) of the best configuration whose name starts with ``prefix``, by median of ``key``."""
    best = None
    for cfg, rs in groups.items():
        if not cfg.startswith(prefix):
            continue
        m = med([r[key] for r in rs])
        if best is None or better(m, best[1]):
            best = (cfg, m)
    return best


def best_executor(groups, key, better):
    return best_of(groups, key, better, "MPIPoolExecutor")


def commands_of(records, bench):
    out = []
    for r in records:
        if r.get("bench") == bench and r.get("command") and r["command"] not in out:
            out.append(r["command"])
    return out


def machine_line(facts):
    return (f"{facts['cpu']}, `nproc` = {facts['nproc']}, {facts['memory']}, Linux {facts['kernel']}; "
            f"run {facts['date']}")


def provenance(w, records, bench, facts, repeats):
    """Where the numbers below come from: the exact launches and the machine."""
    w(f"Produced by these launches (each repeated {repeats} times, rounds interleaved with every other "
      f"launch of the suite; medians), on {machine_line(facts)}:")
    w("")
    w("```")
    for c in commands_of(records, bench):
        w(c)
    w("```")
    w("")


def oversub(workers, facts):
    try:
        cores = int(facts["nproc"])
    except (TypeError, ValueError):
        cores = 2
    return workers > cores


def write_doc(records, facts, command, runs, analysis, path):
    repeats = command_repeats(command)
    img_dir = os.path.join(os.path.dirname(path), "img")
    try:
        from benchmarks.plots import make_plots

        plots = make_plots(records, facts, img_dir)
    except Exception as exc:  # a missing matplotlib must not cost the tables
        print(f"WARNING: no plots ({type(exc).__name__}: {exc})", flush=True)
        plots = {}
    L = []
    w = L.append
    w("# Benchmarks")
    w("")
    w("Generated by `benchmarks/run_all.py` (tables, plots and facts; the analysis section is hand-written). "
      "hpcmicro (policies `steal` and `static`) against `mpi4py.futures.MPIPoolExecutor` and `dask.distributed`, "
      "same machine, same workloads, one run of the suite. Benchmarks are not timed tests: nothing here fails a build.")
    w("")
    w("## How these numbers were produced")
    w("")
    w("One command ran everything below:")
    w("")
    w("```")
    w(command)
    w("```")
    w("")
    w(f"- Machine: {machine_line(facts)}.")
    w(f"- Software: hpcmicro {facts['hpcmicro']} at commit {facts['commit']} (sources digest "
      f"{facts.get('source_digest', '?')}; measured: {facts.get('measured', 'the working tree')}); "
      f"Python {facts['python']}; mpi4py {facts['mpi4py']}; "
      f"MPI: {' '.join(str(facts.get('mpi_library', '?')).split())}; "
      f"dask {facts.get('dask', '?')}, distributed {facts.get('distributed', '?')}; numpy {facts['numpy']}; "
      f"matplotlib {facts.get('matplotlib', '?')}.")
    if facts.get("source_digest_end") and facts["source_digest_end"] != facts.get("source_digest"):
        w(f"- **WARNING: hpcmicro's sources changed during the run** (digest at the end "
          f"{facts['source_digest_end']}, commit {facts.get('commit_end')}): "
          "launches may have measured different code.")
    if facts.get("suite_s"):
        w(f"- The whole suite took {facts['suite_s'] / 60:.1f} minutes.")
    w("- Processes. hpcmicro and MPIPoolExecutor: `mpiexec -n W+1`, rank 0 is the master (hpcmicro's / the "
      "executor's) and W ranks run tasks. Dask: `LocalCluster(n_workers=W, threads_per_worker=1, processes=True)`, "
      "W single-threaded worker processes (each with its nanny process, which only supervises it) plus the "
      "benchmark's own process, which holds the client and Dask's scheduler (LocalCluster's default). So every "
      "system gets W task-running processes and **one extra coordinating process**, which shares the cores with them. "
      "`workers` below is always W.")
    w(f"- **Oversubscription**: this machine has {facts['nproc']} cores. Wherever W > {facts['nproc']} the workers "
      "alone outnumber the cores; tables mark those columns/rows *oversubscribed*. (e) goes to 16 ranks on purpose, "
      "with sleeping tasks (see there).")
    if facts.get("nice"):
        w(f"- Every launch ran under `nice -n {facts['nice']}` (the same for every system), to shield it from "
          "other processes on this shared machine.")
    cb = facts.get("cpu_busy_before")
    if cb:
        w(f"- Other load: before each launch the suite waits (up to `--quiet-wait` s) for the CPUs to be < 20% busy; "
          f"measured just before the launches: median {cb['median']:.0%}, max {cb['max']:.0%} busy; "
          f"{cb['launches_over_20pct']} of {cb['launches']} launches started on a busier machine.")
    w("- Environment of every launch: " + " ".join(f"`{k}={v}`" for k, v in MPICH_ENV.items()) +
      ", `PYTHONPATH=<the measured copy>` (Dask's worker processes inherit it).")
    w(f"- Every configuration is its own launch (its own `mpiexec`, or its own Dask cluster), repeated {repeats} "
      "times with the rounds interleaved; tables show the **median** and, in parentheses, the range over the repeats. "
      "Every record, with the command that produced it, is in `benchmarks/results/latest.jsonl`.")
    w("")
    summary(w, records, facts)
    if plots:
        w("Plots (from the same records):")
        w("")
        for title, rel in plots.items():
            w(f"- {title}: [{rel}]({rel})")
        w("")
    verdicts = []
    sec_throughput(w, records, facts, repeats, verdicts, plots)
    sec_irregular(w, records, facts, repeats, verdicts, plots)
    sec_tree(w, records, facts, repeats, plots)
    sec_reduce(w, records, facts, repeats)
    sec_scaling(w, records, facts, repeats, plots)

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


def plot_ref(w, plots, key):
    for title, rel in plots.items():
        if key in rel:
            w(f"![{title}]({rel})")
            w("")


# -- summary --------------------------------------------------------------------------


def summary(w, records, facts):
    """One table, 2 workers: the headline number of every benchmark for every system."""
    rows = []

    def m(bench, key, **match):
        g = group(records, bench, **match)
        return g, {cfg: med([r[key] for r in rs]) for cfg, rs in g.items()}

    cols = ("hpcmicro steal", "hpcmicro static", "MPIPoolExecutor", "Dask")

    def pick(meds, prefix, fmt, better=max, label=lambda c: c):
        cands = {c: v for c, v in meds.items() if c.startswith(prefix)}
        if not cands:
            return "–"
        if prefix == "MPIPoolExecutor" and len(cands) > 1:
            one = next((c for c in cands if c.endswith("chunksize=1")), None)
            bc = better(cands, key=cands.get)
            parts = []
            if one:
                parts.append(f"{fmt(cands[one])} (chunksize 1)")
            if bc != one:
                parts.append(f"{fmt(cands[bc])} (best: {bc.split()[-1].replace('=', ' ')})")
            return "; ".join(parts)
        if prefix == "Dask" and len(cands) > 1:
            first = next(iter(cands))
            bc = better(cands, key=cands.get)
            parts = [f"{fmt(cands[first])} ({label(first)})"]
            if bc != first:
                parts.append(f"{fmt(cands[bc])} ({label(bc)})")
            return "; ".join(parts)
        c = next(iter(cands)) if len(cands) == 1 else better(cands, key=cands.get)
        return fmt(cands[c])

    def short_dask(cfg):
        return {"Dask client.map (1 task per item)": "1 task per item"}.get(
            cfg, cfg.replace("Dask client.map over ", "").replace("Dask ", "").replace(" (results pickled to bytes)",
                                                                                     ", results pickled"))

    g, meds = m("throughput", "tasks_per_s", workers=2)
    if meds:
        hm = {c: v for c, v in meds.items() if "list(range" not in c}
        rows.append(("(a) no-op tasks/s", [pick(hm, p, f_rate, label=short_dask) for p in cols]))
    for name in ("mandelbrot", "pareto", "pareto-sorted"):
        g, meds = m("irregular", "efficiency", workload=name, workers=2)
        if meds:
            rows.append((f"(b) efficiency, {name}", [pick(meds, p, f_eff) for p in cols]))
    trees = []
    for r in records:
        if r.get("bench") == "tree" and r.get("system") == "dask" and r["tree"] not in trees:
            trees.append(r["tree"])
    for t in trees:
        g, meds = m("tree", "nodes_per_s", tree=t, workers=2)
        if meds:
            nodes = next(iter(g.values()))[0]["expected_nodes"]
            rows.append((f"(c) UTS {t} ({nodes:,} nodes): nodes/s", [pick(meds, p, f_rate) for p in cols]))
    red = [r for r in records if r.get("bench") == "reduce"]
    if red:
        cells = []
        for p in cols:
            variants = {}
            for r in red:
                if r["config"].startswith(p):
                    variants.setdefault(r["variant"], set()).add(r["value_hex"])
            if not variants:
                cells.append("–")
                continue
            names = {"map_reduce": "", "as_completed": "as_completed", "ordered": "in order", "bag": "bag tree"}
            cells.append("; ".join(f"{'yes' if len(v) == 1 else '**no**'}{' (' + names[k] + ')' if names[k] else ''}"
                                   for k, v in variants.items()))
        wk = sorted({r["workers"] for r in red})
        rows.append((f"(d) sum bitwise identical over {', '.join(map(str, wk))} workers and all repeats", cells))
    sc = [r for r in records if r.get("bench") == "scaling"]
    if sc:
        top = max(r["workers"] for r in sc)
        g, meds = m("scaling", "efficiency", workers=top)
        label = f"(e) efficiency, {top} workers ({top + 1} processes, oversubscribed), sleeping tasks"
        rows.append((label, [pick(meds, p, f_eff) for p in cols]))
        sp = {cfg: med([r["sum_task_s"] / r["wall_s"] for r in rs]) for cfg, rs in g.items()}
        rows.append((f"(e) speedup at {top} workers (total task time / makespan; ideal {top})",
                     [pick(sp, p, lambda x: f"{x:.1f}x") for p in cols]))
    if not rows:
        return
    w("## At a glance (2 workers unless said otherwise)")
    w("")
    w("Medians; the sections below give every configuration, its range, its command and the workload. "
      "MPIPoolExecutor is shown at chunksize 1 (no tuning) and at its best chunksize; Dask at its "
      "one-task-per-item form and, where better, its best batched form.")
    w("")
    w("| benchmark | " + " | ".join(cols) + " |")
    w("|---|" + "---|" * len(cols))
    for what, cells in rows:
        w(f"| {what} | " + " | ".join(cells) + " |")
    w("")


# -- (a) --------------------------------------------------------------------------------


def sec_throughput(w, records, facts, repeats, verdicts, plots):
    thr = [r for r in records if r.get("bench") == "throughput"]
    if not thr:
        return
    w("## (a) Scheduling throughput: no-op microtasks per second")
    w("")
    w("Kernel `benchmarks.common.noop` (returns None); every result goes back to the master / client. "
      "hpcmicro gets no tuning: `rt.map(noop, hm.Range(n, 1), root=0)` (payload `range(i, i+1)`, computed on "
      "the worker) and, second row, the plain list `list(range(n))` (payloads travel in messages, like the "
      "executor's). MPIPoolExecutor: `list(executor.map(noop, range(n), chunksize=c))`. Dask: "
      "`client.gather(client.map(noop, range(n), pure=False))` (one task per item), and three batched forms "
      "with 4096 items per task: `dask.bag.range(n, npartitions=n/4096).map(noop).compute()`; "
      "`client.map(noop_chunk, [range(i, i+4096), ...])`, each task returning its list of results; and the same "
      "with each task returning its list pickled into one `bytes` object, unpickled on the client "
      "(`benchmarks.common.noop_chunk_pickled`). n grows x4 from 1,000 until a call lasts >= 0.5 s "
      "(cap 4,194,304); the last call is the measurement, n is shown.")
    w("")
    provenance(w, records, "throughput", facts, repeats)
    worker_counts = sorted({r["workers"] for r in thr})
    w("| system |" + "".join(f" workers={k}{' (oversubscribed)' if oversub(k, facts) else ''}: tasks/s | n |"
                             for k in worker_counts))
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
    plot_ref(w, plots, "throughput")
    for k in worker_counts:
        g = by_w[k]
        best = best_executor(g, "tasks_per_s", lambda a, b: a > b)
        cs1 = g.get("MPIPoolExecutor chunksize=1")
        dmap = g.get("Dask client.map (1 task per item)")
        dbest = best_of(g, "tasks_per_s", lambda a, b: a > b, "Dask")
        for cfg in ("hpcmicro steal, tasks=hm.Range(n, 1)", "hpcmicro steal, tasks=list(range(n))"):
            if cfg not in g:
                continue
            hm_rate = med([r["tasks_per_s"] for r in g[cfg]])
            parts = []
            if cs1:
                parts.append(f"**{hm_rate / med([r['tasks_per_s'] for r in cs1]):.0f}x** MPIPoolExecutor chunksize=1")
            if best:
                parts.append(f"**{hm_rate / best[1]:.2f}x** its best ({best[0].split()[-1]})")
            if dmap:
                parts.append(f"**{hm_rate / med([r['tasks_per_s'] for r in dmap]):.0f}x** Dask client.map")
            if dbest:
                parts.append(f"**{hm_rate / dbest[1]:.2f}x** Dask's best ({dbest[0].replace('Dask ', '')})")
            tag = " (oversubscribed)" if oversub(k, facts) else ""
            w(f"- workers={k}, {cfg}: " + "; ".join(parts) + f"{tag}.")
            if k == 2 and cs1 and best:
                r1 = hm_rate / med([r["tasks_per_s"] for r in cs1])
                rb = hm_rate / best[1]
                verdicts.append((f"(a) no-op throughput, {cfg}, >= 20x executor chunksize=1", f"{r1:.0f}x", r1 >= 20))
                verdicts.append((f"(a) no-op throughput, {cfg}, >= executor best chunksize ({best[0].split()[-1]})",
                                 f"{rb:.2f}x", rb >= 1.0))
    w("")


# -- (b) --------------------------------------------------------------------------------


def sec_irregular(w, records, facts, repeats, verdicts, plots):
    irr = [r for r in records if r.get("bench") == "irregular"]
    if not irr:
        return
    w("## (b) Irregular workloads: efficiency = ideal makespan / measured makespan")
    w("")
    w("Ideal makespan = (sum of the per-task times the kernels measured in that same call) / workers; "
      "measured makespan = wall time of the call on the master / client, from submission to all results in hand. "
      "Kernels time themselves (`time.perf_counter` around the work) and return the elapsed time, identically "
      "for every system. hpcmicro: `rt.map(kernel, tasks, root=0)`; MPIPoolExecutor: "
      "`list(executor.map(kernel, tasks, chunksize=c))`; Dask: `client.gather(client.map(kernel, tasks, "
      "pure=False))` (one task per item; Dask's scheduler places them and steals work by itself).")
    w("")
    provenance(w, records, "irregular", facts, repeats)
    plot_ref(w, plots, "efficiency")
    workloads = []
    for r in irr:
        if (r["workload"], r["workers"]) not in workloads:
            workloads.append((r["workload"], r["workers"]))
    for name, k in workloads:
        g = group(records, "irregular", workload=name, workers=k)
        desc = next(iter(g.values()))[0]["workload_desc"]
        n_tasks = next(iter(g.values()))[0]["n_tasks"]
        w(f"### {name}, workers={k}{' (oversubscribed)' if oversub(k, facts) else ''}")
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
            w(f"Checksums of the image agree across all runs and systems: "
              f"{'yes' if len(sums) == 1 else 'NO: ' + str(sorted(sums))}.")
        w("")
        if st and sl and k == 2:
            e_st, e_sl = med([r["efficiency"] for r in st]), med([r["efficiency"] for r in sl])
            if e_st < 0.7:
                verdicts.append((f"(b) {name}: steal efficiency >= 0.9 (static gets {e_st:.2f} < 0.7)",
                                 f"{e_sl:.2f}", e_sl >= 0.9))
            else:
                verdicts.append((f"(b) {name}: static gets {e_st:.2f} >= 0.7, so no target; steal gets",
                                 f"{e_sl:.2f}", None))


# -- (c) --------------------------------------------------------------------------------


def sec_tree(w, records, facts, repeats, plots):
    tree = [r for r in records if r.get("bench") == "tree"]
    if not tree:
        return
    w("## (c) Spawn-heavy tree search: UTS node count")
    w("")
    w("One task per tree node, for every system. hpcmicro: one root task, `functools.partial(uts.count_kernel, "
      "params)` spawns every child (`context().spawn`) and returns 1, `map_reduce(op=\"sum\")` counts. `static` "
      "keeps spawned tasks where they were spawned, so with a single root every node runs on one worker. "
      "MPIPoolExecutor: its tasks cannot submit tasks, so the tree is walked level by level (BFS), one "
      "`executor.map(children, frontier, chunksize=c)` per tree level (chunksize 1 only on the trees of at most "
      "20,000 nodes: ~4,000 tasks/s). Dask: tasks submitting tasks, `benchmarks.common.uts_count_dask`: a task "
      "visits its node, submits one task per child from inside the task (`distributed.worker_client()`: it "
      "secedes from the worker's thread pool while it waits) and returns 1 + its children's counts. Every count "
      "is checked against `uts.serial_stats`; the serial walk's time (on the master, one core) is the speedup "
      "reference.")
    w("")
    provenance(w, records, "tree", facts, repeats)
    plot_ref(w, plots, "uts")
    trees = []
    for r in tree:
        if (r["tree"], r["workers"]) not in trees:
            trees.append((r["tree"], r["workers"]))
    dask_rate = [r["nodes_per_s"] for r in tree if r.get("system") == "dask"]
    for name, k in trees:
        g = group(records, "tree", tree=name, workers=k)
        r0 = next(iter(g.values()))[0]
        w(f"### {r0['tree_desc']}, workers={k}{' (oversubscribed)' if oversub(k, facts) else ''}")
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
        if not any(c.startswith("Dask") for c in g) and dask_rate:
            est = r0["expected_nodes"] / med(dask_rate)
            w(f"| Dask tasks submitting tasks | not run: ~{est:.0f} s at the {f_rate(med(dask_rate))} nodes/s "
              "it gets on the small trees | | | |")
        best = best_executor(g, "wall_s", lambda a, b: a < b)
        w("")
        if best:
            w(f"Best MPIPoolExecutor chunksize: {best[0].split()[-1]} ({f_s(best[1])} s).")
            w("")


# -- (d) --------------------------------------------------------------------------------


def sec_reduce(w, records, facts, repeats):
    red = [r for r in records if r.get("bench") == "reduce"]
    if not red:
        return
    r0 = red[0]
    worker_counts = sorted({r["workers"] for r in red})
    w("## (d) Floating-point sum: bitwise the same for 1, 2 and 4 workers?")
    w("")
    w(f"The sum of `hpcmicro.kernels.synthetic.order_sensitive_value(i)` for i < {r0['n_tasks']:,}, one task per "
      "value; values built so that their float sum depends on the order of addition. The task "
      "(`benchmarks.common.jittered_value`) busy-waits 0 to 0.4 ms (a fixed function of i) before returning its "
      "value, so tasks differ in length as real ones do and results arrive out of index order. "
      "What each tool computes, as a user would naturally write it:")
    w("")
    w("- hpcmicro: `rt.map_reduce(jittered_value, list(range(n)), op=\"sum\")`: a fixed pairwise tree over task "
      "ids, whoever ran what.")
    w("- MPIPoolExecutor: one `executor.submit` per value; summed **in arrival order**, "
      "`sum(f.result() for f in concurrent.futures.as_completed(futures))`, and, on the same futures, in "
      "submission order, `sum(f.result() for f in futures)` (what `sum(executor.map(...))` computes).")
    w("- Dask: `futures = client.map(jittered_value, range(n), pure=False)`; summed **in arrival order** on the "
      "client, `sum(f.result() for f in distributed.as_completed(futures))`; on the same futures "
      "`client.submit(sum, futures)` (one task sums the list in index order); and a tree reduction, "
      "`dask.bag.range(n, npartitions=16).map(jittered_value).sum().compute()`.")
    w("")
    w(f"References: serial left fold in index order `sum(values)` = `{r0['left_fold_hex']}`; correctly rounded sum "
      f"`math.fsum(values)` = `{r0['fsum_hex']}`.")
    w("")
    provenance(w, records, "reduce", facts, repeats)
    w("| tool, reduction |" + "".join(f" workers={k} |" for k in worker_counts) +
      " bitwise identical for all worker counts and repeats | = serial left fold | max abs error vs fsum |")
    w("|---|" + "---|" * len(worker_counts) + "---|---|---:|")
    g = {}
    for r in red:
        g.setdefault(r["config"], []).append(r)
    for cfg in order_configs(g):
        rs = g[cfg]
        row = f"| {cfg} |"
        for k in worker_counts:
            vals = [r["value_hex"] for r in rs if r["workers"] == k]
            distinct = sorted(set(vals))
            if not vals:
                row += " – |"
            elif len(distinct) == 1:
                row += f" `{distinct[0]}` |"
            else:
                row += f" {len(distinct)} different values in {len(vals)} runs, e.g. `{vals[0]}` |"
        allv = {r["value_hex"] for r in rs}
        ident = "yes" if len(allv) == 1 else f"**no** ({len(allv)} different values in {len(rs)} runs)"
        left = {r["equals_left_fold"] for r in rs}
        lf = "yes" if left == {True} else ("no" if left == {False} else "sometimes")
        row += f" {ident} | {lf} | {max(r['abs_error_vs_fsum'] for r in rs):.3g} |"
        w(row)
    w("")


# -- (e) --------------------------------------------------------------------------------


def sec_scaling(w, records, facts, repeats, plots):
    sc = [r for r in records if r.get("bench") == "scaling"]
    if not sc:
        return
    desc = sc[0]["workload_desc"]
    w("## (e) Scaling from 2 to 16 ranks (oversubscribed: up to 16 processes on "
      f"{facts['nproc']} cores)")
    w("")
    w(f"A fixed irregular workload: {desc}. The kernel (`benchmarks.common.timed_sleep`) **sleeps**: a sleeping "
      f"task uses no CPU, so 16 processes on {facts['nproc']} cores still show how well each system spreads the "
      "tasks, not how the kernel time-shares the cores; what the runtimes themselves spend (polling, messages, "
      "Python bookkeeping) does compete for the cores, and counts. hpcmicro `steal` and MPIPoolExecutor "
      "(`executor.map(kernel, durations, chunksize=1)`, the natural chunksize for tasks of milliseconds) run "
      "on N = 2, 4, 8, 16 MPI ranks, i.e. W = N-1 workers; Dask (`client.map(kernel, durations, pure=False)`) "
      "runs W = N-1 worker processes (plus its client/scheduler process, and a nanny per worker). "
      "Efficiency = (sum of the task times / W) / makespan; speedup = makespan with 1 worker / makespan with W.")
    w("")
    provenance(w, records, "scaling", facts, repeats)
    plot_ref(w, plots, "scaling")
    g = {}
    for r in sc:
        g.setdefault(r["config"], {}).setdefault(r["workers"], []).append(r)
    w("| system | ranks (MPI) | workers | oversubscribed? | makespan s | efficiency | speedup (ideal = workers) "
      "| speedup vs its own 1-worker run |")
    w("|---|---:|---:|---|---:|---:|---:|---:|")
    for cfg in order_configs(g):
        base = g[cfg].get(1)
        t1 = med([r["wall_s"] for r in base]) if base else None
        for k in sorted(g[cfg]):
            rs = g[cfg][k]
            walls = [r["wall_s"] for r in rs]
            eff = [r["efficiency"] for r in rs]
            spd = [r["sum_task_s"] / r["wall_s"] for r in rs]
            procs = k + 1
            ranks = str(procs) if not cfg.startswith("Dask") else "–"
            over = f"**yes**: {procs} processes on {facts['nproc']} cores" if oversub(k, facts) else "no"
            own = f"{t1 / med(walls):.2f}" if t1 else "–"
            w(f"| {cfg} | {ranks} | {k} | {over} | {f_s(med(walls))}{span(walls, f_s)} | "
              f"{f_eff(med(eff))}{span(eff, f_eff)} | {med(spd):.2f} ({k}) | {own} |")
    w("")
    w("Speedup = total task time (the work, measured by the tasks themselves: "
      f"{f_s(med([r['sum_task_s'] for r in sc]))} s) / makespan, i.e. against running the tasks one after the other "
      "with no runtime at all; it is the same for every system, so the columns compare. The last column divides by "
      "the system's own 1-worker makespan instead, which flatters a system that is slow with 1 worker.")
    w("")
    longest = max(r["max_task_s"] for r in sc)
    greedy = {}
    for r in sc:
        if "greedy_s" in r:
            greedy.setdefault(r["workers"], []).append(r["greedy_s"])
    if greedy:
        w("No scheduler can do better than a list schedule without overhead (each task, in order, to the first free "
          "worker) by much; on the task times measured in these runs that gives a makespan of " +
          ", ".join(f"{f_s(med(v))} s (efficiency {f_eff(med([r['sum_task_s'] for r in sc]) / k / med(v))}) "
                    f"at {k} worker{'s' if k > 1 else ''}" for k, v in sorted(greedy.items())) +
          f". The longest task takes {longest * 1e3:.0f} ms.")
        w("")


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
    for m in re.finditer(r"<!-- ([\w.-]+):begin(?: \([^)]*\))? -->", text):  # "(hand-written)" may follow
        name = m.group(1)
        if name == "analysis":
            continue  # kept by old_analysis, in its own place
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
    p.add_argument("--only", default=",".join(BENCHES), help="benchmarks to run, of: " + ", ".join(BENCHES))
    p.add_argument("--systems", default=",".join(SYSTEMS), help="systems to run, of: " + ", ".join(SYSTEMS))
    p.add_argument("--throughput-workers", default="2", help="worker counts for (a)")
    p.add_argument("--workers", default="2", help="worker counts for (b) and (c)")
    p.add_argument("--reduce-workers", default="1,2,4", help="worker counts for (d)")
    p.add_argument("--scaling-ranks", default="2,4,8,16", help="MPI ranks for (e) (Dask: ranks - 1 workers)")
    p.add_argument("--scaling-systems", default="steal,executor,dask", help="systems for (e)")
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
    args.systems = args.systems.split(",")
    args.scaling_systems = args.scaling_systems.split(",")
    for name in args.only:
        if name not in BENCHES:
            p.error(f"unknown benchmark {name!r}")
    for name in args.systems + args.scaling_systems:
        if name not in SYSTEMS:
            p.error(f"unknown system {name!r}")
    args.throughput_workers = [int(x) for x in args.throughput_workers.split(",")]
    args.workers = [int(x) for x in args.workers.split(",")]
    args.reduce_workers = [int(x) for x in args.reduce_workers.split(",")]
    args.scaling_ranks = [int(x) for x in args.scaling_ranks.split(",")]
    command = "python benchmarks/run_all.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))

    if args.from_results:
        with open(RESULTS) as f:
            lines = [json.loads(x) for x in f if x.strip()]
        meta = lines[0]
        records = [r for r in lines[1:] if "bench" in r]
        runs = {r["command"]: r["rc"] for r in lines[1:] if "launch" in r}
        write_doc(records, meta["facts"], meta["command"], runs, old_analysis(DOC), DOC)
        print(f"wrote {DOC} and its plots")
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
        for _bench, _ranks, system, argv_, timeout in cfgs:
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
                r["launch_system"] = system
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
    facts["suite_s"] = time.perf_counter() - t_start
    print(f"total {facts['suite_s']:.0f}s", flush=True)

    if args.no_doc:
        for r in records:
            print(json.dumps({k: v for k, v in r.items() if k not in ("per_worker",)}))
        return
    busy = [x["cpu_busy_before"] for x in launches]
    facts["cpu_busy_before"] = {"median": med(busy), "max": max(busy),
                                "launches_over_20pct": sum(b > 0.2 for b in busy), "launches": len(busy)}
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write(json.dumps({"command": command, "facts": facts}) + "\n")
        for r in launches + records:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    write_doc(records, facts, command, runs, old_analysis(DOC), DOC)
    print(f"wrote {DOC}, its plots and {RESULTS}")


if __name__ == "__main__":
    main()
