"""The plots of docs/benchmarks.md, drawn from the records of ``run_all.py`` (matplotlib, PNG).

``make_plots(records, facts, img_dir)`` writes ``benchmarks_*.png`` into
``img_dir`` and returns ``{title: path relative to docs/}``, in the order the
doc lists them. Every plot shows medians over the repeats (error bars: range)
and names the machine it ran on.
"""

from __future__ import annotations

import os
import statistics

COLORS = {"hpcmicro steal": "#1f77b4", "hpcmicro static": "#aec7e8", "MPIPoolExecutor": "#ff7f0e", "Dask": "#2ca02c"}


def _color(cfg):
    for k, c in COLORS.items():
        if cfg.startswith(k):
            return c
    return "#7f7f7f"


def _med(xs):
    return statistics.median(xs) if xs else float("nan")


def _group(records, bench, **match):
    out = {}
    for r in records:
        if r.get("bench") != bench or any(r.get(k) != v for k, v in match.items()):
            continue
        out.setdefault(r["config"], []).append(r)
    return out


def _order(cfgs):
    from benchmarks.run_all import config_key

    first = {c: i for i, c in enumerate(cfgs)}
    return sorted(cfgs, key=lambda c: (config_key(c), first[c]))


def _footer(fig, facts):
    fig.text(0.01, 0.005, f"{facts.get('cpu', '?')}, {facts.get('nproc', '?')} cores; {facts.get('date', '')}; "
             "python benchmarks/run_all.py (see docs/benchmarks.md)", fontsize=7, color="#555555")


def _errs(vals, m):
    return [[m - min(vals)], [max(vals) - m]]


def throughput(records, facts, path):
    import matplotlib.pyplot as plt

    g = _group(records, "throughput", workers=2)
    if not g:
        return False
    cfgs = _order(list(g))
    meds = [_med([r["tasks_per_s"] for r in g[c]]) for c in cfgs]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(cfgs) + 1.6))
    y = range(len(cfgs))
    ax.barh(list(y), meds, color=[_color(c) for c in cfgs])
    for i, c in enumerate(cfgs):
        vals = [r["tasks_per_s"] for r in g[c]]
        ax.errorbar(meds[i], i, xerr=_errs(vals, meds[i]), color="black", capsize=2, lw=0.8)
        ax.text(meds[i] * 1.15, i, f"{meds[i]:,.0f}", va="center", fontsize=7)
    ax.set_yticks(list(y))
    ax.set_yticklabels(cfgs, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(right=max(meds) * 8)
    ax.set_xlabel("no-op tasks per second (log scale, median; bars: range)")
    ax.set_title("(a) No-op throughput, 2 workers (+1 coordinating process each)", fontsize=10)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _footer(fig, facts)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def efficiency(records, facts, path):
    import matplotlib.pyplot as plt

    irr = [r for r in records if r.get("bench") == "irregular" and r.get("workers") == 2]
    if not irr:
        return False
    workloads = []
    for r in irr:
        if r["workload"] not in workloads:
            workloads.append(r["workload"])
    # per workload: steal, static, executor chunksize=1, executor best, Dask
    series = ["hpcmicro steal", "hpcmicro static", "MPIPoolExecutor chunksize=1", "MPIPoolExecutor best chunksize",
              "Dask client.map"]
    vals = {s: [] for s in series}
    labels = {s: [] for s in series}
    for wl in workloads:
        g = _group(records, "irregular", workload=wl, workers=2)
        m = {c: _med([r["efficiency"] for r in rs]) for c, rs in g.items()}
        ex = {c: v for c, v in m.items() if c.startswith("MPIPoolExecutor")}
        best = max(ex, key=ex.get) if ex else None
        for s in series:
            if s == "MPIPoolExecutor best chunksize":
                vals[s].append(ex.get(best, float("nan")) if best else float("nan"))
                labels[s].append(best.split("=")[-1] if best else "")
            else:
                vals[s].append(m.get(s, float("nan")))
                labels[s].append("")
    fig, ax = plt.subplots(figsize=(9, 4.6))
    width = 0.8 / len(series)
    colors = ["#1f77b4", "#aec7e8", "#ffbb78", "#ff7f0e", "#2ca02c"]
    for j, s in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(workloads))]
        ax.bar(xs, vals[s], width, label=s, color=colors[j])
        for x, v, lab in zip(xs, vals[s], labels[s]):
            if v == v:
                ax.text(x, v + 0.01, f"{v:.2f}" + (f"\ncs={lab}" if lab else ""), ha="center", fontsize=6)
    ax.set_xticks(range(len(workloads)))
    ax.set_xticklabels(workloads)
    ax.set_ylim(0, 1.15)
    ax.axhline(1.0, color="#999999", lw=0.6, ls="--")
    ax.set_ylabel("efficiency = ideal / measured makespan")
    ax.set_title("(b) Irregular workloads, 2 workers (median of the repeats)", fontsize=10)
    ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _footer(fig, facts)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def uts(records, facts, path):
    import matplotlib.pyplot as plt

    tr = [r for r in records if r.get("bench") == "tree" and r.get("workers") == 2]
    if not tr:
        return False
    trees = []
    for r in tr:
        if r["tree"] not in trees:
            trees.append(r["tree"])
    series = ["hpcmicro steal", "hpcmicro static", "MPIPoolExecutor best chunksize", "Dask tasks submitting tasks"]
    colors = ["#1f77b4", "#aec7e8", "#ff7f0e", "#2ca02c"]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    width = 0.8 / len(series)
    for j, s in enumerate(series):
        xs, ys = [], []
        for i, t in enumerate(trees):
            g = _group(records, "tree", tree=t, workers=2)
            m = {c: _med([r["nodes_per_s"] for r in rs]) for c, rs in g.items()}
            if s.startswith("MPIPoolExecutor"):
                ex = {c: v for c, v in m.items() if c.startswith("MPIPoolExecutor")}
                v = max(ex.values()) if ex else None
            else:
                v = m.get(s)
            if v:
                xs.append(i + (j - (len(series) - 1) / 2) * width)
                ys.append(v)
        ax.bar(xs, ys, width, label=s, color=colors[j])
        for x, v in zip(xs, ys):
            ax.text(x, v * 1.1, f"{v / 1e3:.1f}k" if v >= 1e3 else f"{v:.0f}", ha="center", fontsize=6)
    serial = []
    for t in trees:
        rs = [r for r in tr if r["tree"] == t]
        serial.append(rs[0]["expected_nodes"] / _med([r["serial_s"] for r in rs]))
    ax.scatter(range(len(trees)), serial, marker="_", s=900, color="black", label="serial walk (1 core)", zorder=3)
    ax.set_xticks(range(len(trees)))
    ax.set_xticklabels(trees, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("tree nodes per second (log scale, median)")
    ax.set_title("(c) UTS, one task per node, 2 workers (Dask only on the two small trees)", fontsize=10)
    ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.1), markerscale=0.3)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _footer(fig, facts)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def scaling(records, facts, path):
    import matplotlib.pyplot as plt

    sc = [r for r in records if r.get("bench") == "scaling"]
    if not sc:
        return False
    g = {}
    for r in sc:
        g.setdefault(r["config"], {}).setdefault(r["workers"], []).append(r)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.4))
    ws = sorted({r["workers"] for r in sc})
    for cfg in _order(list(g)):
        ks = sorted(g[cfg])
        speed = [_med([r["sum_task_s"] / r["wall_s"] for r in g[cfg][k]]) for k in ks]
        effs = [_med([r["efficiency"] for r in g[cfg][k]]) for k in ks]
        a1.plot(ks, speed, marker="o", label=cfg, color=_color(cfg))
        a2.plot(ks, effs, marker="o", label=cfg, color=_color(cfg))
    a1.plot(ws, ws, ls="--", color="#999999", label="ideal")
    try:
        cores = int(facts.get("nproc", 2))
    except ValueError:
        cores = 2
    for ax in (a1, a2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ws)
        ax.set_xticklabels([f"{k}\n({k + 1} ranks)" for k in ws], fontsize=7)
        ax.set_xlabel("workers (MPI ranks = workers + 1)")
        ax.axvspan(cores + 0.5, max(ws) * 1.2, color="#f0f0f0", zorder=0)
        ax.text(0.98, 0.03, f"oversubscribed (> {cores} workers on {cores} cores)", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=7, color="#777777")
    a1.set_yscale("log", base=2)
    a1.set_ylabel("speedup = total task time / makespan")
    a2.set_ylim(0, 1.05)
    a2.set_ylabel("efficiency = speedup / workers")
    a1.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"(e) Scaling on a fixed workload of sleeping heavy-tailed tasks, {cores} cores", fontsize=10)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _footer(fig, facts)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def make_plots(records, facts, img_dir):
    import matplotlib

    matplotlib.use("Agg")
    os.makedirs(img_dir, exist_ok=True)
    out = {}
    for title, name, fn in (
        ("(a) no-op throughput", "benchmarks_throughput.png", throughput),
        ("(b) efficiency on irregular workloads", "benchmarks_efficiency.png", efficiency),
        ("(c) UTS nodes per second", "benchmarks_uts.png", uts),
        ("(e) scaling, 2 to 16 ranks", "benchmarks_scaling.png", scaling),
    ):
        if fn(records, facts, os.path.join(img_dir, name)):
            out[title] = f"img/{name}"
    return out
