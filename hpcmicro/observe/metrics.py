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
_INNER_EDGES = _EDGES[1:-1]


class TaskTimes:
    """Durations of the tasks one worker ran; with ``tracing``, trace events too.

    Events are kept compact (parallel arrays: start, duration, first and last
    root id; spawned ids by event index). A block of back-to-back tasks that
    each took less than MERGE_BELOW_S becomes one event named by its first
    and last task: a per-task event would cost more than such a task and show
    nothing on a timeline. Every slower task keeps its own event; the
    statistics keep every task's duration either way.
    """

    __slots__ = ("durations", "tracing", "ev_start", "ev_dur", "ev_first", "ev_last", "spawned")

    def __init__(self, tracing: bool = False):
        self.durations = array("f")
        self.tracing = tracing
        self.ev_start = array("d")
        self.ev_dur = array("f")
        self.ev_first = array("q")
        self.ev_last = array("q")
        self.spawned: dict = {}  # event index -> task id of a spawned task

    def add(self, start: float, seconds: float, task_id) -> None:
        self.durations.append(seconds)
        if self.tracing:
            self.mark(start, task_id, seconds)

    def mark(self, start: float, task_id, seconds: float) -> None:
        """One task's event (its duration is recorded separately): tracing only."""
        if len(task_id) == 1:
            self._event(start, seconds, task_id[0], task_id[0])
        else:
            self.spawned[len(self.ev_first)] = task_id
            self._event(start, seconds, -1, -1)

    def _event(self, start, seconds, first, last) -> None:
        self.ev_start.append(start)
        self.ev_dur.append(seconds)
        self.ev_first.append(first)
        self.ev_last.append(last)

    def block(self, start: float, first: int, count: int) -> None:
        """Events of a block of ``count`` root tasks from ``first`` that ran back to back from
        ``start``; their durations are the last ``count`` recorded."""
        if not self.tracing or count <= 0:
            return
        d = numpy.frombuffer(self.durations[-count:], dtype=numpy.float32)  # a copy: the array keeps growing
        if d.max() < MERGE_BELOW_S:
            self._event(start, float(d.sum(dtype=numpy.float64)), first, first + count - 1)
            return
        # Runs of small tasks become one event each; every slower task is an event of its own.
        small = d < MERGE_BELOW_S
        new = numpy.ones(count, dtype=bool)
        new[1:] = ~small[1:] | ~small[:-1]
        heads = numpy.nonzero(new)[0]
        tails = numpy.append(heads[1:], count) - 1
        starts = start + numpy.concatenate([[0.0], numpy.cumsum(d[:-1], dtype=numpy.float64)])
        self.ev_start.frombytes(starts[heads].tobytes())
        self.ev_dur.frombytes(numpy.add.reduceat(d, heads).astype(numpy.float32).tobytes())
        self.ev_first.frombytes((heads + first).astype(numpy.int64).tobytes())
        self.ev_last.frombytes((tails + first).astype(numpy.int64).tobytes())

    def add_batch(self, start: float, seconds: float, task_ids) -> None:
        """A batched launch: each task gets an equal share of its time, back to back."""
        share = seconds / len(task_ids)
        for k, task_id in enumerate(task_ids):
            self.add(start + k * share, share, task_id)

    def summary(self) -> dict:
        if not self.durations:
            return {"n": 0, "sum": 0.0, "max": 0.0, "bins": []}
        d = numpy.sort(numpy.frombuffer(self.durations, dtype=numpy.float32).astype(numpy.float64))
        # numpy.histogram(clip(d, _EDGES[0], _EDGES[-1]), _EDGES) without its per-call set-up (this runs every
        # call): how many durations fall below each inner edge, differenced.
        below = numpy.searchsorted(d, _INNER_EDGES, side="left")
        counts = numpy.diff(below, prepend=0, append=d.size)
        nonzero = counts.nonzero()[0]
        return {"n": int(d.size), "sum": float(d.sum(dtype=numpy.float64)), "max": float(d[-1]),
                "bins": [[int(i), int(c)] for i, c in zip(nonzero.tolist(), counts[nonzero].tolist())]}

    def raw(self, rank: int, epoch: float):
        """This worker's trace events, for sending: (rank, starts since epoch, durations, first, last, spawned)."""
        def arr(a, dtype):
            return numpy.frombuffer(a, dtype=dtype).copy() if len(a) else numpy.empty(0, dtype)

        return (rank, arr(self.ev_start, numpy.float64) - epoch, arr(self.ev_dur, numpy.float32),
                arr(self.ev_first, numpy.int64), arr(self.ev_last, numpy.int64), dict(self.spawned))


MERGE_BELOW_S = 50e-6  # tasks shorter than this, run back to back, share one trace event


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
    """Write the workers' timelines (``TaskTimes.raw``) as Chrome trace JSON (Perfetto opens it).

    Written as text line by line (not through dicts and json.dump): a trace has
    one event per task, and this is several times faster.
    """
    lines = []
    for rank, starts, durations, first, last, spawned in timelines:
        lines.append(f'{{"name":"process_name","ph":"M","pid":{rank},"tid":0,"args":{{"name":"rank {rank}"}}}}')
        names = [str(a) if a == b else f"{a}-{b}" for a, b in zip(first.tolist(), last.tolist())]
        for k, tid in spawned.items():
            names[k] = ".".join(map(str, tid))
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
