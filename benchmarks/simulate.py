"""The engine's real scheduling code on simulated time: how one master fares at 10**3-10**5 workers.

    python benchmarks/simulate.py --workers 10000 --task-ms 10 --workload uniform [--group-size 100|0]
    python benchmarks/simulate.py --calibrate          # against real runs at 3-16 ranks here (~1 min)
    python benchmarks/simulate.py --sweep --plot docs/img/scale_efficiency.png   # docs/scale.md (~17 min)

One call, ``map_reduce(op=sum)`` of the workload's tasks, on 1 master + N
simulated workers (``hpcmicro.sim``): the real Master, WorkerProtocol and
Executor; modelled network, message costs and task durations; the master's
CPU per event timed live (its code's own cost, on this machine). Figures:
makespan, efficiency = work / (workers x makespan), master utilization,
messages per second, steals, the largest queues sampled.

``--group-size``: two-level scheduling (engine/group.py), a group master rank
for every N workers (not counted as workers); 0: one master; the default is
``auto_group_size`` (one master below 1,024 workers, groups of ~sqrt(N) above).
``--sweep`` runs every point both ways.

``--calibrate`` runs ``benchmarks/bench_scaling.py`` (1000 sleeping Pareto
tasks, mean 4 ms) under mpiexec at 3, 5, 9 and 16 ranks, then simulates the
same durations on the same worker counts, each task lengthened by the sleep
overshoot that run measured (sum of measured task times minus the nominal
sum, per task), and prints the table of docs/scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from hpcmicro.engine.group import auto_group_size  # noqa: E402
from hpcmicro.sim import WORKLOADS, Costs, Workload, make_workload, simulate  # noqa: E402
from hpcmicro.sim.workloads import METER  # noqa: E402

SWEEP_WORKERS = (1000, 3000, 10000, 30000, 100000)
SWEEP_TASK_MS = (1.0, 10.0, 100.0, 1000.0)
CALIBRATION_RANKS = (3, 5, 9, 16)


def run_one(workload: str, workers: int, task_ms: float, tasks_per_worker: int, costs: Costs, seed: int = 1,
            group_size: int | None = None):
    wl = make_workload(workload, tasks_per_worker * workers, task_ms * 1e-3, seed=seed)
    result = simulate(wl, workers, costs, group_size=group_size or None)
    if wl.total_work_s is not None and abs(result.value - wl.total_work_s) > 1e-9 * wl.total_work_s:
        raise AssertionError(f"the sum reduction {result.value} is not the work {wl.total_work_s}: "
                             "a task lost or doubled")
    return result


def describe(r) -> str:
    layout = f"{r.groups} groups" if r.groups else "one master"
    return (f"{r.workers} workers ({layout}), {r.description}: makespan {r.makespan_s:.4g} s, "
            f"efficiency {r.efficiency:.3f}, "
            f"master busy {r.master_utilization:.0%}, {r.messages_per_s:,.0f} messages/s, {r.steals} steals, "
            f"max pool {r.max_pool}, max queued {r.max_queued}"
            + (f", busiest group master {r.group_utilization:.0%}" if r.groups else "")
            + f" (simulated in {r.wall_s:.1f} s)")


def calibrate(repeats: int) -> list:
    """Real bench_scaling runs beside the simulation of each; returns rows."""
    env = {**os.environ, "MPIR_CVAR_CH4_PROGRESS_THROTTLE": "true", "MPIR_CVAR_POLLS_BEFORE_YIELD": "1"}
    measured: dict = {}
    for _ in range(repeats):
        for ranks in CALIBRATION_RANKS:
            out = subprocess.run(["mpiexec", "-n", str(ranks), sys.executable, os.path.join(HERE, "bench_scaling.py"),
                                  "--system", "steal"], capture_output=True, text=True, timeout=300, env=env,
                                 check=True).stdout
            rec = [json.loads(line) for line in out.splitlines() if line.startswith("{")][-1]
            measured.setdefault(ranks, []).append(rec)
    rows = []
    nominal = make_workload("heavy", 1000, 4e-3, seed=1)
    for ranks, recs in measured.items():
        workers = ranks - 1
        sims = []
        for rec in recs:
            extra = (rec["sum_task_s"] - nominal.total_work_s) / len(nominal.tasks)
            tasks = [d + extra for d in nominal.tasks]
            sims.append(simulate(Workload("heavy", tasks, _charge, nominal.description, sum(tasks)), workers))
        walls = [r["wall_s"] for r in recs]
        errors = [(s.makespan_s - r["wall_s"]) / r["wall_s"] for s, r in zip(sims, recs)]
        rows.append({"ranks": ranks, "workers": workers, "measured_s": walls,
                     "simulated_s": [s.makespan_s for s in sims],
                     "errors": errors, "measured_eff": [r["efficiency"] for r in recs],
                     "simulated_eff": [s.efficiency for s in sims], "steals_measured": [r.get("steals") for r in recs],
                     "steals_simulated": [s.steals for s in sims]})
    return rows


def _charge(d: float) -> float:
    METER.spent += d
    return d


def _span(xs, fmt) -> str:
    lo, hi = min(xs), max(xs)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}-{fmt.format(hi)}"


def calibration_table(rows) -> str:
    lines = ["| ranks (workers) | measured makespan s | simulated s | simulated vs measured | measured efficiency "
             "| simulated efficiency | steals measured / simulated |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['ranks']} ({r['workers']}) | {_span(r['measured_s'], '{:.3f}')} | "
                     f"{_span(r['simulated_s'], '{:.3f}')} | {_span([e * 100 for e in r['errors']], '{:+.1f}')}% | "
                     f"{_span(r['measured_eff'], '{:.3f}')} | {_span(r['simulated_eff'], '{:.3f}')} | "
                     f"{'/'.join(map(str, r['steals_measured']))} / {'/'.join(map(str, r['steals_simulated']))} |")
    return "\n".join(lines)


def sweep(workload: str, tasks_per_worker: int, costs: Costs, workers_list, task_ms_list) -> list:
    """Every (task duration, workers) point with one master and with the automatic groups."""
    results = []
    for task_ms in task_ms_list:
        for workers in workers_list:
            for group_size in sorted({0, auto_group_size(workers) or 0}):  # once below the threshold
                r = run_one(workload, workers, task_ms, tasks_per_worker, costs, group_size=group_size)
                print(json.dumps({"task_ms": task_ms, "group_size": group_size, **r.as_dict()}), flush=True)
                results.append((task_ms, group_size, r))
    return results


def sweep_table(results, workers_list, task_ms_list) -> str:
    head = "| task | layout | " + " | ".join(f"{w:,} workers" for w in workers_list) + " |"
    lines = [head, "|---|---|" + "---:|" * len(workers_list)]
    by = {(t, bool(g), r.workers): r for t, g, r in results}
    for t in task_ms_list:
        for grouped in (False, True):
            cells = []
            for w in workers_list:
                r = by.get((t, grouped, w))
                if r is None or (grouped and not r.groups):
                    cells.append("(one master)")
                elif grouped:
                    cells.append(f"**{r.efficiency:.3f}** ({r.groups} x {-(-w // r.groups)}; "
                                 f"top {r.master_utilization:.0%}, group {r.group_utilization:.0%})")
                else:
                    cells.append(f"{r.efficiency:.3f} (master {r.master_utilization:.0%})")
            lines.append(f"| {t:g} ms | {'groups' if grouped else 'one master'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results, workers_list, task_ms_list, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    by = {(t, bool(g), r.workers): r for t, g, r in results}
    for ax, grouped, name in ((axes[0], False, "one master"), (axes[1], True, "automatic groups (sqrt N)")):
        for t in task_ms_list:
            pts = [(w, by[(t, grouped, w)].efficiency) for w in workers_list if (t, grouped, w) in by]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{t:g} ms tasks")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel(f"simulated workers ({name})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("efficiency")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=1000)
    p.add_argument("--task-ms", type=float, default=10.0, help="mean task duration (ms)")
    p.add_argument("--workload", choices=WORKLOADS, default="uniform")
    p.add_argument("--tasks-per-worker", type=int, default=20, help="tasks = this x workers (not for uts)")
    p.add_argument("--group-size", type=int, default=None,
                   help="workers per group master (0: one master; default: auto_group_size)")
    p.add_argument("--master-us", type=float, default=None,
                   help="the master's CPU per event in us (default: time Master.handle live)")
    p.add_argument("--latency-us", type=float, default=Costs.latency_s * 1e6)
    p.add_argument("--message-us", type=float, default=Costs.message_cpu_s * 1e6)
    p.add_argument("--calibrate", action="store_true")
    p.add_argument("--repeats", type=int, default=2, help="calibration: real runs per rank count")
    p.add_argument("--sweep", action="store_true")
    p.add_argument("--sweep-workers", default=",".join(map(str, SWEEP_WORKERS)))
    p.add_argument("--sweep-task-ms", default=",".join(map(str, SWEEP_TASK_MS)))
    p.add_argument("--plot", default=None, help="sweep: write the efficiency plot here (PNG)")
    a = p.parse_args(argv)
    costs = Costs(latency_s=a.latency_us * 1e-6, message_cpu_s=a.message_us * 1e-6,
                  master_event_s=None if a.master_us is None else a.master_us * 1e-6)
    if a.calibrate:
        t0 = time.perf_counter()
        rows = calibrate(a.repeats)
        for row in rows:
            print(json.dumps(row))
        print(f"\ncalibration ({a.repeats} real runs per rank count, {time.perf_counter() - t0:.0f} s):\n")
        print(calibration_table(rows))
        return
    if a.sweep:
        workers_list = [int(x) for x in a.sweep_workers.split(",")]
        task_list = [float(x) for x in a.sweep_task_ms.split(",")]
        results = sweep(a.workload, a.tasks_per_worker, costs, workers_list, task_list)
        print(f"\n{a.workload}, {a.tasks_per_worker} tasks per worker; {costs.describe()}\n")
        print(sweep_table(results, workers_list, task_list))
        if a.plot:
            plot(results, workers_list, task_list, a.plot,
                 f"{a.workload} tasks ({a.tasks_per_worker} per worker), simulated")
        return
    group_size = auto_group_size(a.workers) if a.group_size is None else a.group_size
    r = run_one(a.workload, a.workers, a.task_ms, a.tasks_per_worker, costs, group_size=group_size)
    print(json.dumps(r.as_dict()))
    print(describe(r))


if __name__ == "__main__":
    main()
