"""``hpcmicro report``: a run's statistics as a table, and its timeline as a plot.

Reads a result file of ``hpcmicro run`` (through ``hpcmicro.io.results``), a
checkpoint (progress of each call), or a Chrome trace written with
``trace=`` / ``--trace``. The plot (matplotlib) is a per-rank Gantt chart of
the tasks and the workers' utilization over time.
"""

from __future__ import annotations

import json

import numpy

from ..io.results import Result, file_kind, read_result
from ..observe.stats import format_table

__all__ = ["describe_file", "inspect_file", "load_trace", "plot_trace", "utilization_over_time"]


def describe_file(path: str) -> str:
    """A text report of a result file or a checkpoint."""
    if _is_checkpoint(path):
        return _describe_checkpoint(path)
    return _describe_result(read_result(path, value=False))


def _describe_result(result: Result) -> str:
    a = result.attrs
    head = [f"{result.path}: job {a.job or '?'}, kernel {a.kernel or '?'}, {a.ranks or '?'} ranks, "
            f"hpcmicro {a.version or '?'}, {a.created}"]
    return "\n".join(head + [format_table(a.stats)])


def inspect_file(path: str) -> str:
    """``describe_file`` plus what a result file holds and the spec that made it."""
    if _is_checkpoint(path):
        return _describe_checkpoint(path)
    result = read_result(path, value=False)
    a = result.attrs
    lines = [_describe_result(result), "", "datasets:"]
    lines += [f"  {d.name}: shape {d.shape}, {d.dtype}" + (f", encoding {d.encoding}" if d.encoding else "")
              for d in result.datasets]
    for key, value in (("call", a.call), ("op", a.op), ("policy", a.policy),
                       ("tasks", a.tasks if a.tasks_source else None), ("wall_s", a.wall_s), ("trace", a.trace)):
        if value not in (None, ""):
            lines.append(f"{key}: {value}")
    if a.spec:
        lines += ["spec:", *("  " + line for line in a.spec.splitlines())]
    return "\n".join(lines)


def _is_checkpoint(path: str) -> bool:
    """A checkpoint is told by its first bytes, so HDF5 never parses one before it is verified."""
    from ..io.checkpoint import is_checkpoint

    return is_checkpoint(path) or file_kind(path) == "checkpoint"  # file_kind: an older checkpoint


def _describe_checkpoint(path: str) -> str:
    """ValueError (as for any file that is not what it should be) when the checkpoint fails its checks."""
    from ..io.checkpoint import CheckpointError, read_checkpoint

    try:
        _, calls = read_checkpoint(path)
    except CheckpointError as exc:
        raise ValueError(str(exc)) from None
    lines = [f"{path}: checkpoint with {len(calls)} call(s)"]
    for c in calls:
        pending = sum(b - a for a, b, _ in c.pending_roots) + len(c.pending_spawned)
        state = "complete" if c.complete else f"{pending} task(s) pending, ~{c.finished} finished"
        lines.append(f"  call {c.index}: {c.kind} over {c.n_roots} root tasks: {state}; {len(c.failed)} failed")
        for task_id, tb in c.failed[:5]:
            lines.append(f"    failed {tuple(task_id)}: {tb.strip().splitlines()[-1] if tb.strip() else ''}")
    return "\n".join(lines)


def load_trace(path: str) -> dict:
    """{rank: (starts, durations)} in seconds, from a Chrome trace file."""
    with open(path) as fh:
        try:
            data = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not a trace: not valid JSON ({exc})") from None
    events = data.get("traceEvents") if isinstance(data, dict) else None
    if not isinstance(events, list):
        raise ValueError(f"{path}: not a trace: expected a JSON object with a 'traceEvents' list "
                         f"(a Chrome trace written with --trace), got {type(data).__name__}"
                         + (" without 'traceEvents'" if isinstance(data, dict) else ""))
    per_rank: dict = {}
    for e in events:
        if isinstance(e, dict) and e.get("ph") == "X":
            try:
                per_rank.setdefault(e["pid"], []).append((float(e["ts"]) / 1e6, float(e["dur"]) / 1e6))
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{path}: not a trace: a complete event lacks a numeric pid, ts or dur") from None
    return {r: (numpy.array([s for s, _ in v]), numpy.array([d for _, d in v])) for r, v in sorted(per_rank.items())}


def utilization_over_time(trace: dict, bins: int = 100) -> tuple[numpy.ndarray, numpy.ndarray]:
    """(bin centres, fraction of workers busy) over the span of the trace."""
    if not trace:
        return numpy.empty(0), numpy.empty(0)
    end = max(float((s + d).max()) for s, d in trace.values())
    edges = numpy.linspace(0.0, end, bins + 1)
    busy = numpy.zeros(bins)
    for starts, durs in trace.values():
        for a, b in zip(starts, starts + durs):  # overlap of [a, b) with every bin
            busy += numpy.clip(numpy.minimum(b, edges[1:]) - numpy.maximum(a, edges[:-1]), 0, None)
    width = edges[1] - edges[0]
    return (edges[:-1] + edges[1:]) / 2, busy / (width * len(trace))


def plot_trace(trace_path: str, out_png: str, title: str = "") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("plotting needs matplotlib: pip install matplotlib") from None
    trace = load_trace(trace_path)
    fig, (gantt, util) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for row, (starts, durs) in enumerate(trace.values()):
        gantt.broken_barh(list(zip(starts, durs)), (row - 0.4, 0.8), facecolors=f"C{row % 10}", linewidth=0)
    gantt.set_yticks(range(len(trace)), [f"rank {r}" for r in trace])
    gantt.set_title(title or f"tasks per worker ({trace_path})")
    t, u = utilization_over_time(trace)
    util.plot(t, u * 100)
    util.set_ylim(0, 105)
    util.set_ylabel("busy %")
    util.set_xlabel("seconds since the call started")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
