"""What checkpoints cost: run time with checkpoints every 1 s and 10 s against none,
restart time, and checkpoint size against finished work.

    python benchmarks/bench_checkpoint.py                # runs every configuration, prints a table
    python benchmarks/bench_checkpoint.py --doc          # ... and writes its section of docs/benchmarks.md

Each configuration is its own ``mpiexec -n 3`` (1 master + 2 workers). The
workload is CPU-bound (busy-wait kernels, heavy-tailed durations) so that any
time the runtime spends on checkpoints shows up as lost worker time; map
results are 100 float64 each, so the checkpoint grows with finished work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)  # this checkout's hpcmicro (also when run_all.py measures a copy of it)

from hpcmicro.constants import EXIT_OK, EXIT_PREEMPTED, MPICH_ENV  # noqa: E402


# -- the job (runs under mpiexec) --------------------------------------------------------

def task(seconds_and_i):
    import numpy as np

    from hpcmicro.kernels.synthetic import spin

    seconds, i = seconds_and_i
    spin(seconds)
    return np.full(100, float(i))


def job(args) -> None:
    import hpcmicro as hm
    from hpcmicro.kernels.synthetic import heavy_tailed_durations

    durations = heavy_tailed_durations(args.tasks, args.mean, seed=7)
    tasks = [(d, i) for i, d in enumerate(durations)]
    every = args.every if args.every > 0 else 1e9
    sizes = []
    with hm.Runtime(checkpoint=args.checkpoint, checkpoint_every=every) as rt:
        stop = threading.Event()
        if rt.rank == 0 and args.checkpoint:
            def watch():  # checkpoint size against elapsed time (finished work grows ~linearly)
                t0 = time.perf_counter()
                while not stop.wait(0.25):
                    if os.path.exists(args.checkpoint):
                        sizes.append((time.perf_counter() - t0, os.path.getsize(args.checkpoint)))
            threading.Thread(target=watch, daemon=True).start()
        t0 = time.perf_counter()
        out = rt.map(task, tasks, root=0)
        wall = time.perf_counter() - t0
        stop.set()
        if rt.rank == 0:
            writer = rt._writer
            print(json.dumps({
                "every": args.every, "wall": wall, "work": sum(durations), "tasks": args.tasks,
                "restored": rt.stats.restored, "ok": len(out) == args.tasks and float(out[-1][0]) == args.tasks - 1,
                "writes": writer.writes if writer else 0,
                "last_write_s": writer.last_seconds if writer else 0.0,
                "final_size": os.path.getsize(args.checkpoint) if args.checkpoint else 0,
                "sizes": sizes,
            }), flush=True)


# -- the driver ----------------------------------------------------------------------------

def mpiexec(n, argv, timeout=900):
    env = dict(os.environ, **MPICH_ENV, PYTHONPATH=REPO)
    proc = subprocess.run(["mpiexec", "-n", str(n), sys.executable, __file__, *argv], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=REPO)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode not in (EXIT_OK, EXIT_PREEMPTED) or not lines:
        raise RuntimeError(f"run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return lines[0]


def restart_time(base, tmp):
    """Kill a checkpointed run half way, then time the restart to its end and its load."""
    from hpcmicro.io.checkpoint import read_checkpoint

    ck = os.path.join(tmp, "restart.h5")
    env = dict(os.environ, **MPICH_ENV, PYTHONPATH=REPO)
    argv = ["mpiexec", "-n", "3", sys.executable, __file__, "job", *base, "--every", "1", "--checkpoint", ck]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO,
                            start_new_session=True)
    time.sleep(float(base[base.index("--half") + 1]))
    sys.path.insert(0, REPO)
    from tests.mpirun import kill_job

    kill_job(proc.pid)  # every rank at once (mpiexec alone would let them stop gracefully)
    proc.communicate()
    t0 = time.perf_counter()
    _, calls = read_checkpoint(ck)
    load_s = time.perf_counter() - t0
    pending = sum(b - a for a, b, _ in calls[-1].pending_roots)
    size = os.path.getsize(ck)  # before the resumed run rewrites it
    t0 = time.perf_counter()
    rec = mpiexec(3, ["job", *base, "--every", "1", "--checkpoint", ck])
    return {"load_s": load_s, "size": size, "pending": pending,
            "resumed_wall": rec["wall"], "total_launch_s": time.perf_counter() - t0, "ok": rec["ok"]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", default="drive", choices=["drive", "job"])
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--mean", type=float, default=0.01)
    parser.add_argument("--every", type=float, default=0)
    parser.add_argument("--checkpoint")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--half", type=float, default=10.0)
    parser.add_argument("--doc", action="store_true")
    args = parser.parse_args()
    if args.mode == "job":
        return job(args)

    base = ["--tasks", str(args.tasks), "--mean", str(args.mean), "--half", str(args.half)]
    rows = {0: [], 10: [], 1: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):  # interleaved, so drifts of a noisy machine hit all alike
            for every in rows:
                ck = os.path.join(tmp, f"run{every}-{r}.h5")
                extra = ["--every", str(every)] + (["--checkpoint", ck] if every else [])
                rec = mpiexec(3, ["job", *base, *extra])
                assert rec["ok"], rec
                rows[every].append(rec)
        restart = restart_time(base, tmp)
    report = render(rows, restart, args)
    print(report)
    if args.doc:
        write_doc(report)


def render(rows, restart, args) -> str:
    import platform

    none = statistics.median(r["wall"] for r in rows[0])
    lines = [
        "## Checkpoint cost (issue: fault tolerance)",
        "",
        f"Command: `python benchmarks/bench_checkpoint.py --doc` (tasks={args.tasks}, mean task "
        f"{args.mean * 1000:.0f} ms heavy-tailed busy-wait, map results of 100 float64 each; "
        f"1 master + 2 workers; {args.repeats} interleaved repeats, median). "
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}.",
        "",
        "| checkpoints | wall (s) | overhead vs none | checkpoints written | last write (s) | final file (MB) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for every, label in ((0, "none"), (10, "every 10 s"), (1, "every 1 s")):
        wall = statistics.median(r["wall"] for r in rows[every])
        writes = statistics.median(r["writes"] for r in rows[every])
        last = statistics.median(r["last_write_s"] for r in rows[every])
        size = statistics.median(r["final_size"] for r in rows[every]) / 1e6
        over = "-" if every == 0 else f"{(wall / none - 1) * 100:+.1f}%"
        lines.append(f"| {label} | {wall:.2f} | {over} | {writes:.0f} | {last:.3f} | {size:.2f} |")
    sizes = rows[1][0]["sizes"]
    wall1 = rows[1][0]["wall"]
    lines += [
        "",
        "Checkpoint size against finished work (every 1 s, first repeat; finished work taken as the",
        "fraction of the run's wall time elapsed):",
        "",
        "| elapsed | ~finished | file (MB) |",
        "| --- | --- | --- |",
    ]
    for t, size in sizes[:: max(1, len(sizes) // 8)]:
        lines.append(f"| {t:.1f} s | {min(1.0, t / wall1) * 100:.0f}% | {size / 1e6:.2f} |")
    lines += [
        "",
        f"Restart: a run killed (SIGKILL, whole job) after {args.half:.0f} s left a {restart['size'] / 1e6:.2f} MB "
        f"checkpoint with {restart['pending']} of {args.tasks} tasks pending; reading and verifying it took "
        f"{restart['load_s'] * 1000:.0f} ms; the resumed call took {restart['resumed_wall']:.2f} s "
        f"(whole relaunch incl. MPI start-up {restart['total_launch_s']:.2f} s), result exact: {restart['ok']}.",
    ]
    return "\n".join(lines)


def write_doc(section: str) -> None:
    sys.path.insert(0, HERE)
    from docsection import write_section

    write_section("checkpoint", section)


if __name__ == "__main__":
    main()
