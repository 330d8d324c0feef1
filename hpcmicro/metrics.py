"""Per-task times, their distribution, and the optional per-task timeline (trace).

A worker appends each task's duration to a float32 array (4 bytes a task,
~40 ns); at the end of a call it sends a log-spaced histogram (50 bins per
decade, so a percentile is within 5%), the count, sum and exact maximum. The
master merges histograms exactly and reads p50/p95 off the merged one. With
tracing on, start times and task ids are kept too, and the master writes them
as Chrome trace events (open the file in Perfetto or chrome://tracing).
"""

from __future__ import annotations

import json
from array import array

import numpy

__all__ = ["TaskTimes", "merge_summaries", "write_chrome_trace"]

_EDGES = 10.0 ** numpy.linspace(-7, 4, 11 * 50 + 1)  # 100 ns .. 10^4 s


class TaskTimes:
    """Durations of the tasks one worker ran; with ``tracing``, also their start times and ids.

    Ids of root tasks go into an int64 array (cheap to send); the few spawned
    ids are kept aside with their position.
    """

    __slots__ = ("durations", "starts", "roots", "spawned", "tracing")

    def __init__(self, tracing: bool = False):
        self.durations = array("f")
        self.tracing = tracing
        self.starts = array("d")
        self.roots = array("q")  # root index, or -1 for a spawned task
        self.spawned: dict = {}  # position -> task id of spawned tasks

    def add(self, start: float, seconds: float, task_id) -> None:
        self.durations.append(seconds)
        if self.tracing:
            self.mark(start, task_id)

    def mark(self, start: float, task_id) -> None:
        """Note a task's start and id (tracing only; its duration is added separately)."""
        self.starts.append(start)
        if len(task_id) == 1:
            self.roots.append(task_id[0])
        else:
            self.spawned[len(self.roots)] = task_id
            self.roots.append(-1)

    def add_batch(self, start: float, seconds: float, task_ids) -> None:
        """A batched launch: each task gets an equal share of its time."""
        share = seconds / len(task_ids)
        for k, task_id in enumerate(task_ids):
            self.add(start + k * share, share, task_id)

    def summary(self) -> dict:
        d = numpy.frombuffer(self.durations, dtype=numpy.float32) if len(self.durations) else numpy.empty(0)
        counts, _ = numpy.histogram(numpy.clip(d, _EDGES[0], _EDGES[-1]), bins=_EDGES)
        nonzero = numpy.nonzero(counts)[0]
        return {"n": int(d.size), "sum": float(d.sum(dtype=numpy.float64)), "max": float(d.max()) if d.size else 0.0,
                "bins": [[int(i), int(counts[i])] for i in nonzero]}

    def events(self, rank: int, epoch: float):
        """This worker's timeline, compact for sending: (rank, starts - epoch, durations, ids)."""
        starts = numpy.frombuffer(self.starts, dtype=numpy.float64) - epoch if len(self.starts) else numpy.empty(0)
        roots = numpy.frombuffer(self.roots, dtype=numpy.int64) if len(self.roots) else numpy.empty(0, numpy.int64)
        return rank, starts, numpy.frombuffer(self.durations, dtype=numpy.float32).copy(), (roots, self.spawned)


def merge_summaries(summaries) -> dict:
    """One distribution from the workers' summaries: count, mean, p50, p95, max (seconds)."""
    counts = numpy.zeros(len(_EDGES) - 1, dtype=numpy.int64)
    n, total, peak = 0, 0.0, 0.0
    for s in summaries:
        for i, c in s["bins"]:
            counts[i] += c
        n += s["n"]
        total += s["sum"]
        peak = max(peak, s["max"])
    if n == 0:
        return {"count": 0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    cum = numpy.cumsum(counts)

    def percentile(q):
        i = int(numpy.searchsorted(cum, q * n))
        return float(min(peak, numpy.sqrt(_EDGES[i] * _EDGES[i + 1])))  # the bin's geometric centre

    return {"count": n, "mean": total / n, "p50": percentile(0.5), "p95": percentile(0.95), "max": peak}


def write_chrome_trace(path: str, timelines, metadata: dict | None = None) -> None:
    """Write the workers' timelines (``TaskTimes.events``) as Chrome trace JSON (Perfetto opens it).

    Written as text line by line (not through dicts and json.dump): a trace has
    one event per task, and this is several times faster.
    """
    lines = []
    for rank, starts, durations, ids in timelines:
        lines.append(f'{{"name":"process_name","ph":"M","pid":{rank},"tid":0,"args":{{"name":"rank {rank}"}}}}')
        roots, spawned = ids
        names = roots.tolist()
        for pos, tid in spawned.items():
            names[pos] = ".".join(map(str, tid))
        ts = numpy.round(starts * 1e6, 3).tolist()
        dur = numpy.round(durations.astype(numpy.float64) * 1e6, 3).tolist()
        lines.extend(f'{{"name":"{name}","ph":"X","pid":{rank},"tid":0,"ts":{t},"dur":{d},"cat":"task"}}'
                     for t, d, name in zip(ts, dur, names))
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write('{"displayTimeUnit":"ms","otherData":' + json.dumps(metadata or {}) + ',"traceEvents":[\n')
        fh.write(",\n".join(lines))
        fh.write("\n]}\n")
    import os

    os.replace(tmp, path)
