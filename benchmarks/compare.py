"""Measure two revisions of hpcmicro side by side, in one run: is there a performance regression?

    python benchmarks/compare.py --base HEAD~1 --head HEAD
    python benchmarks/compare.py --base HEAD --head WORKTREE --repeats 5 --nice -20 --out bench-out/cmp.md
    python benchmarks/compare.py --base v0.1 --head HEAD --only throughput,irregular

Each revision is exported to its own folder (``git archive REV hpcmicro benchmarks
jobs`` into ``bench-out/rev-<sha>``; ``WORKTREE``: a copy of the working tree's
folders into ``bench-out/rev-worktree``), and every launch runs **that revision's
own** benchmark scripts there, with ``PYTHONPATH`` and the working directory set
to that folder: the old revision runs its old code and its old package layout.

Measured (1 master + 2 workers unless said otherwise; arguments that every
revision's scripts accept):

- throughput: ``bench_throughput.py --system steal|static`` on 3 ranks and in
  one process (plain ``python``); no-op tasks/s for ``hm.Range(n, 1)`` and
  ``list(range(n))``, at a fixed n (``--n0 N --n-max N``) so both revisions time
  the very same call;
- irregular: ``bench_irregular.py --system steal``: efficiency on the Mandelbrot,
  Pareto and sorted-Pareto workloads;
- checkpoint: ``bench_checkpoint.py job``: wall time without checkpoints and
  with one every second; overhead = with / without, from the same round.

Round r runs every configuration for both revisions, base first in even rounds
and head first in odd ones (ABBA), so slow drifts of a noisy machine hit both
alike. The table gives medians, ranges and head/base per configuration, and
flags a change of more than ``--threshold`` (5%) in the regression direction.
Every launch (command, rc, records) goes to ``bench-out/compare-<date>.jsonl``;
failed launches' output to ``bench-out/compare-<date>.log``. Exit status 1 when
a regression is flagged or a measurement is missing.

This driver imports only the standard library and stdlib-only helpers of the
working tree's ``benchmarks/run_all.py``; it never imports hpcmicro itself.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUT = os.path.join(REPO, "bench-out")
sys.path.insert(0, REPO)

from benchmarks.run_all import MPI_ENV, f_rate, run_one, wait_for_quiet  # noqa: E402  (stdlib only)

BENCHES = ("throughput", "irregular", "checkpoint")
EXPORTED = ("hpcmicro", "benchmarks", "jobs")
TP_N = {3: 2_000_000, 1: 1_000_000}  # no-op tasks per timed call: ~0.5-1 s on 2 cores
CK_ARGS = ["--tasks", "2000", "--mean", "0.01"]  # 20 s of busy-wait work: ~10 s on 2 workers
TP_KIND = {"Range": "hm.Range(n, 1)", "list": "list(range(n))"}


def git(*args):
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def export(rev, out=OUT):
    """Put revision ``rev`` (or the working tree) in its own folder; returns (short sha / label, folder).

    A commit's folder is reused when a previous export finished it (same sha, same files), so that
    concurrent runs never delete each other's snapshot; the working tree is copied afresh.
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.h5")
    if rev == "WORKTREE":
        dest = os.path.join(out, "rev-worktree")
        shutil.rmtree(dest, ignore_errors=True)
        for name in EXPORTED:
            if os.path.isdir(os.path.join(REPO, name)):
                shutil.copytree(os.path.join(REPO, name), os.path.join(dest, name), ignore=ignore)
        return f"worktree@{git('rev-parse', '--short', 'HEAD')}", dest
    sha = git("rev-parse", "--short", rev + "^{commit}")
    dest = os.path.join(out, f"rev-{sha}")
    if os.path.exists(os.path.join(dest, ".exported")):
        return sha, dest
    tmp = f"{dest}.tmp-{os.getpid()}"
    os.makedirs(tmp)
    paths = [p for p in EXPORTED if subprocess.run(["git", "cat-file", "-e", f"{sha}:{p}"], cwd=REPO,
                                                   capture_output=True).returncode == 0]
    archive = subprocess.run(["git", "archive", sha, *paths], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
    open(os.path.join(tmp, ".exported"), "w").close()
    shutil.rmtree(dest, ignore_errors=True)  # an unfinished export
    try:
        os.rename(tmp, dest)
    except OSError:  # another run finished it first
        shutil.rmtree(tmp, ignore_errors=True)
    return sha, dest


def imported_from(folder):
    """``hpcmicro.__file__`` as a launch in ``folder`` sees it (must lie inside the folder)."""
    env = dict(os.environ, PYTHONPATH=folder)
    proc = subprocess.run([sys.executable, "-c", "import hpcmicro; print(hpcmicro.__file__)"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=60)
    return proc.stdout.strip() or f"import failed: {proc.stderr.strip().splitlines()[-1:]}"


def configs(only):
    """(bench, label, ranks, script argv, timeout s) of every configuration."""
    out = []
    if "throughput" in only:
        for ranks in (3, 1):
            for policy in ("steal", "static"):
                n = str(TP_N[ranks])
                out.append(("throughput", f"{ranks} rank{'s' if ranks > 1 else ''}, {policy}", ranks,
                            ["benchmarks/bench_throughput.py", "--system", policy, "--n0", n, "--n-max", n], 120))
    if "irregular" in only:
        out.append(("irregular", "3 ranks, steal", 3, ["benchmarks/bench_irregular.py", "--system", "steal"], 120))
    if "checkpoint" in only:
        for every in ("0", "1"):
            extra = ["--checkpoint", "{ck}"] if every != "0" else []
            out.append(("checkpoint", "none" if every == "0" else "every 1 s", 3,
                        ["benchmarks/bench_checkpoint.py", "job", *CK_ARGS, "--every", every, *extra], 180))
    return out


def metrics(bench, label, records):
    """{(configuration, metric): (value, higher is better)} of one launch's records."""
    out = {}
    for r in records:
        if bench == "throughput":
            out[(f"{label}, tasks={TP_KIND.get(r.get('tasks_kind'), '?')}, n={r['n']:,}", "tasks/s")] = (
                r["tasks_per_s"], True)
        elif bench == "irregular":
            out[(f"{label}, {r['workload']}", "efficiency")] = (r["efficiency"], True)
        elif bench == "checkpoint" and r.get("ok"):
            out[(f"checkpoints {label}", "wall s")] = (r["wall"], False)
    return out


def cpu_jiffies():
    """(busy, all) CPU time of the whole machine in seconds, from /proc/stat (Linux; zeros elsewhere)."""
    try:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    vals, hz = vals[:8], os.sysconf("SC_CLK_TCK")  # user nice system idle iowait irq softirq steal
    return (sum(vals) - vals[3] - vals[4]) / hz, sum(vals) / hz  # steal (the VM's host) counts as busy


def launch(argv, timeout, log, nice, folder):
    """run_all.run_one, plus the share of the machine other processes used meanwhile (0..1)."""
    (busy0, all0), own0 = cpu_jiffies(), resource.getrusage(resource.RUSAGE_CHILDREN)
    rc, recs, elapsed = run_one(argv, timeout, log, nice, folder)
    (busy1, all1), own1 = cpu_jiffies(), resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)  # every reaped descendant
    other = max(0.0, (busy1 - busy0) - own) / max(1e-9, all1 - all0)
    return rc, recs, elapsed, other


def order(rnd):
    """ABBA: base first in even rounds, head first in odd ones."""
    return ("base", "head") if rnd % 2 == 0 else ("head", "base")


def verdict(ratio, higher_better, threshold=0.05):
    """'REGRESSION' when head moved past the threshold the wrong way, 'better' the right way, else ''."""
    if ratio != ratio:  # nan
        return ""
    change = ratio - 1 if higher_better else 1 - ratio
    return "**REGRESSION**" if change < -threshold else "better" if change > threshold else ""


def add_overhead(samples):
    """Checkpoint overhead per revision and round: wall with checkpoints / wall without (same round)."""
    none, every = ("checkpoints none", "wall s"), ("checkpoints every 1 s", "wall s")
    if none not in samples or every not in samples:
        return
    ratios = {}
    for side in ("base", "head"):
        a, b = dict(samples[none]["values"][side]), dict(samples[every]["values"][side])
        ratios[side] = [(r, b[r] / a[r]) for r in sorted(set(a) & set(b))]
    samples[("checkpoints every 1 s vs none", "overhead")] = {
        "bench": "checkpoint", "higher": False, "values": ratios,
        "load": samples[none].get("load", []) + samples[every].get("load", [])}


def fmt(metric, x):
    if metric == "tasks/s":
        return f_rate(x)
    if metric == "overhead":
        return f"{(x - 1) * 100:+.1f}%"
    return f"{x:.3f}" if metric == "efficiency" else f"{x:.2f}"


def table(samples, threshold):
    rows = ["| benchmark | configuration | metric | base: median (range) | head: median (range) | head/base | "
            "| others' CPU (max) |", "|---|---|---|---:|---:|---:|---|---:|"]
    flagged = []
    for (config, metric), s in samples.items():
        cells, meds = [], {}
        for side in ("base", "head"):
            vals = [v for _, v in s["values"].get(side, [])]
            if not vals:
                cells.append("**missing**")
                continue
            meds[side] = statistics.median(vals)
            rng = f" ({fmt(metric, min(vals))} – {fmt(metric, max(vals))})" if len(vals) > 1 else ""
            cells.append(fmt(metric, meds[side]) + rng)
        ratio = meds["head"] / meds["base"] if len(meds) == 2 and meds["base"] else float("nan")
        flag = verdict(ratio, s["higher"], threshold) if len(meds) == 2 else "**missing**"
        if flag not in ("", "better"):
            flagged.append(f"{s['bench']}: {config} ({metric})")
        direction = "higher is better" if s["higher"] else "lower is better"
        rows.append(f"| {s['bench']} | {config} | {metric} ({direction}) | {cells[0]} | {cells[1]} | "
                    f"{'–' if ratio != ratio else f'{ratio:.3f}'} | {flag} | {max(s.get('load') or [0]):.0%} |")
    return rows, flagged


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="git revision, or WORKTREE")
    p.add_argument("--head", required=True, help="git revision, or WORKTREE")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", default=",".join(BENCHES), help="of: " + ", ".join(BENCHES))
    p.add_argument("--nice", type=int, default=0, help="run every launch under `nice -n NICE` (negative: as root)")
    p.add_argument("--quiet-wait", type=float, default=10.0,
                   help="before each launch, wait up to this many seconds for the CPUs to be < 20%% busy")
    p.add_argument("--max-other-load", type=float, default=0.2,
                   help="run a launch again when other processes used more than this share of the CPUs meanwhile")
    p.add_argument("--retries", type=int, default=2, help="at most this many reruns of a launch (see above)")
    p.add_argument("--threshold", type=float, default=0.05, help="flag head/base changes beyond this fraction")
    p.add_argument("--out", help="also write the markdown report to this file")
    args = p.parse_args(argv)
    only = args.only.split(",")
    for name in only:
        if name not in BENCHES:
            p.error(f"unknown benchmark {name!r}")
    command = "python benchmarks/compare.py " + " ".join(map(shlex.quote, sys.argv[1:] if argv is None else argv))
    stamp = datetime.datetime.now(datetime.timezone.utc)
    os.makedirs(OUT, exist_ok=True)
    jsonl_path = os.path.join(OUT, f"compare-{stamp:%Y%m%d-%H%M%S}.jsonl")
    log = open(jsonl_path[:-len(".jsonl")] + ".log", "w")

    revs, problems = {}, []
    for side, rev in (("base", args.base), ("head", args.head)):
        sha, folder = export(rev)
        where = imported_from(folder)
        print(f"{side}: {rev} = {sha} in {folder}; hpcmicro imported from {where}", flush=True)
        if not where.startswith(folder + os.sep):
            problems.append(f"{side} ({rev}): hpcmicro imported from {where}, not from its snapshot {folder}")
        revs[side] = {"rev": rev, "sha": sha, "folder": folder, "hpcmicro_file": where}
    if args.base == args.head == "WORKTREE":
        p.error("base and head are both WORKTREE")

    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    cfgs = configs(only)
    samples = {}  # (configuration, metric) -> {"bench", "higher", "values": {side: [(round, value)]}}
    jsonl = open(jsonl_path, "w")
    jsonl.write(json.dumps({"command": command, "date": stamp.isoformat(), "platform": platform.platform(),
                            "cpus": os.cpu_count(), "python": sys.version.split()[0], "revisions": revs,
                            "env": MPI_ENV, "nice": args.nice}) + "\n")
    t_start = time.perf_counter()
    loads, reruns = [], 0
    for rnd in range(args.repeats):
        for bench, label, ranks, script, timeout in cfgs:
            for side in order(rnd):
                folder = revs[side]["folder"]
                ck = os.path.join(folder, f"ck-{side}-{rnd}.h5")
                argv_ = ([mpiexec, "-n", str(ranks)] if ranks > 1 else []) + [sys.executable]
                argv_ += [a.replace("{ck}", ck) for a in script]
                text = " ".join(map(shlex.quote, argv_)).replace(sys.executable, "python").replace(mpiexec, "mpiexec")
                for attempt in range(1 + args.retries):
                    if os.path.exists(ck):
                        os.remove(ck)  # a leftover checkpoint would be resumed from
                    busy = wait_for_quiet(args.quiet_wait) if args.quiet_wait > 0 else None
                    rc, recs, elapsed, other = launch(argv_, timeout, log, args.nice, folder)
                    rerun = other > args.max_other_load and attempt < args.retries
                    jsonl.write(json.dumps({"side": side, "sha": revs[side]["sha"], "round": rnd + 1, "bench": bench,
                                            "config": label, "command": text, "cwd": folder, "rc": rc,
                                            "elapsed_s": elapsed, "cpu_busy_before": busy, "other_load": other,
                                            "discarded": rerun, "records": recs}) + "\n")
                    jsonl.flush()
                    print(f"[{time.perf_counter() - t_start:5.0f}s] round {rnd + 1} {side:4} {bench} {label}: rc={rc}, "
                          f"{elapsed:.1f}s, other processes used {other:.0%} of the CPUs"
                          + (": run again" if rerun else ""), flush=True)
                    if not rerun:
                        break
                    reruns += 1
                if os.path.exists(ck):
                    os.remove(ck)
                loads.append(other)
                for r in recs:
                    if r.get("hpcmicro_file") and not r["hpcmicro_file"].startswith(folder + os.sep):
                        problems.append(f"{side}: {text} measured {r['hpcmicro_file']}")
                got = metrics(bench, label, recs) if rc == 0 else {}
                if not got:
                    problems.append(f"{side} ({revs[side]['sha']}), round {rnd + 1}: `{text}` gave no result "
                                    f"(rc={rc}; see {os.path.relpath(log.name, REPO)})")
                for key, (value, higher) in got.items():
                    s = samples.setdefault(key, {"bench": bench, "higher": higher, "values": {}})
                    s["values"].setdefault(side, []).append((rnd, value))
                    s.setdefault("load", []).append(other)
    total = time.perf_counter() - t_start
    jsonl.close()
    log.close()
    add_overhead(samples)

    rows, flagged = table(samples, args.threshold)
    b, h = revs["base"], revs["head"]
    lines = [f"## hpcmicro performance: {b['rev']} ({b['sha']}) vs {h['rev']} ({h['sha']})", "",
             f"- Command: `{command}`",
             f"- Date: {stamp:%Y-%m-%d %H:%M UTC}; took {total / 60:.1f} min.",
             f"- Machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs; "
             f"Python {sys.version.split()[0]}.",
             f"- base = `{b['rev']}` = {b['sha']} (hpcmicro from `{os.path.relpath(b['hpcmicro_file'], REPO)}`); "
             f"head = `{h['rev']}` = {h['sha']} (hpcmicro from `{os.path.relpath(h['hpcmicro_file'], REPO)}`).",
             f"- {args.repeats} round{'s' if args.repeats != 1 else ''}, ABBA "
             "(base first in rounds 1, 3, ...; head first in 2, 4, ...); every launch "
             f"its own process under a timeout, env {' '.join(f'{k}={v}' for k, v in MPI_ENV.items())}"
             + (f", `nice -n {args.nice}`" if args.nice else "") + ". Medians (range over the rounds); "
             f"flagged: head worse than base by more than {args.threshold:.0%}.",
             f"- Other processes used a median {statistics.median(loads or [0]):.0%} (max {max(loads or [0]):.0%}) "
             f"of the CPUs during the kept launches; {reruns} launch{'es' if reruns != 1 else ''} run again because "
             f"others used > {args.max_other_load:.0%}.",
             f"- Raw records: `{os.path.relpath(jsonl_path, REPO)}`.", "", *rows, ""]
    if flagged:
        lines += ["Regressions beyond the threshold: " + "; ".join(flagged) + ".", ""]
    if problems:
        lines += ["Problems:", ""] + [f"- {x}" for x in dict.fromkeys(problems)] + [""]
    report = "\n".join(lines)
    print("\n" + report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    return 1 if flagged or problems else 0


if __name__ == "__main__":
    sys.exit(main())
