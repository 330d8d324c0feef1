"""Per-task times, their distribution, and the optional per-task timeline (trace).

Memory is constant in the number of tasks. A worker appends each task's
duration to a small float32 buffer (~40 ns a task) and folds the buffer, every
FOLD_EVERY tasks, into a fixed log-spaced histogram (50 bins per decade from
1 ns to 10^5 s: 700 counts) plus the count, sum, minimum and maximum; the
buffer never holds more than FOLD_EVERY durations and one block or batch
(BLOCK_MAX / BATCH_MAX of the executor): 32 KB at most, whatever the call's
size. At the end of a call the worker sends that summary; the master adds the
histograms (exactly: they are counts) and reads p50/p95 off the merged one.

Accuracy: count, minimum and maximum are exact (of the float32-rounded
durations: 7 significant digits), the sum is their float64 sum. A percentile
``pq`` is the geometric centre of the bin holding the order statistic of rank
``ceil(q * n)`` (numpy's ``method="inverted_cdf"``), clamped to [min, max],
so it is within a factor 10**(1/100) (2.33%) of that order statistic for any
duration between 1 ns and 10^5 s (durations outside are counted in the end
bins, and their percentile is only clamped to [min, max]).

With tracing on, start times and task ids are kept too (one event per task or
per run of short tasks: a trace grows with the call by design), and the master
writes them as Chrome trace events (open the file in Perfetto or
chrome://tracing).
"""

from __future__ import annotations

import itertools
import json
import math
import threading
from array import array
from bisect import bisect_left, bisect_right

__all__ = ["TaskTimes", "merge_summaries", "write_chrome_trace"]

BINS_PER_DECADE = 50
_N_BINS = 14 * BINS_PER_DECADE
_EDGES = [10.0 ** (-9 + i * (14 / _N_BINS)) for i in range(_N_BINS + 1)]  # 1 ns .. 10^5 s
_INNER_EDGES = _EDGES[1:-1]
# Folds of fewer durations are binned in Python (bisect): a short call, or the last fold of a long one,
# costs no NumPy import. Larger ones are binned by NumPy (vectorized: ~20 ns a duration).
NUMPY_FOLD_FROM = 128
# A percentile is a bin's geometric centre: within this factor of the true order statistic.
PERCENTILE_FACTOR = 10.0 ** (1 / (2 * BINS_PER_DECADE))
FOLD_EVERY = 4096  # pending durations folded into the histogram this often (16 KB of float32)


_inner_edges_array = None


def _inner_edges():
    """``_INNER_EDGES`` as a NumPy array, made on the first large fold."""
    global _inner_edges_array
    if _inner_edges_array is None:
        import numpy

        _inner_edges_array = numpy.array(_INNER_EDGES)
    return _inner_edges_array


class TaskTimes:
    """Durations of the tasks one worker ran, in constant memory; with ``tracing``, trace events too.

    ``durations`` holds only the durations not yet folded into the histogram
    (``fold``): appenders call ``fold`` once it holds FOLD_EVERY or more, and
    ``block`` reads the last ones of a block before that. ``summary`` folds
    whatever is left. ``fold`` empties the array in place (it replaces it only
    while something views its buffer), so a caller that keeps its ``append``
    bound should bind it again after a fold.

    Events are kept compact (parallel arrays: start, duration, first and last
    root id; spawned ids by event index). A block of back-to-back tasks that
    each took less than MERGE_BELOW_S becomes one event named by its first
    and last task: a per-task event would cost more than such a task and show
    nothing on a timeline. Every slower task keeps its own event; the
    statistics count every task's duration either way.
    """

    __slots__ = ("durations", "counts", "n", "total", "low", "high", "_folding",
                 "tracing", "ev_start", "ev_dur", "ev_first", "ev_last", "spawned")

    def __init__(self, tracing: bool = False):
        self.durations = array("f")  # pending, not yet in ``counts``: fewer than FOLD_EVERY + one block
        self.counts = [0] * _N_BINS  # a fixed list: constant memory
        self.n = 0
        self.total = 0.0
        self.low = float("inf")
        self.high = 0.0
        # A retired worker's mailbox thread takes the summary while its hung kernel may still finish and fold.
        self._folding = threading.Lock()
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
        if len(self.durations) >= FOLD_EVERY:
            self.fold()

    def fold(self) -> None:
        """Move the pending durations into the histogram, count, sum, minimum and maximum."""
        with self._folding:
            # A copy, then its removal: two atomic array operations, so a concurrent append is neither lost
            # nor blocked (an array whose buffer numpy were viewing could not grow).
            taken = self.durations[:]
            if not taken:
                return
            try:
                del self.durations[:len(taken)]
            except BufferError:  # someone holds a view of it (a test's numpy.frombuffer): a new array, then
                self.durations = array("f", self.durations[len(taken):])
            # Bin b holds _EDGES[b] <= x < _EDGES[b + 1]; durations outside the edges go to the end bins.
            counts = self.counts
            if len(taken) < NUMPY_FOLD_FROM:
                for x in taken:
                    counts[bisect_right(_INNER_EDGES, x)] += 1
                total, low, high = math.fsum(taken), min(taken), max(taken)
            else:
                import numpy

                d = numpy.frombuffer(taken, dtype=numpy.float32).astype(numpy.float64)
                binned = numpy.bincount(numpy.searchsorted(_inner_edges(), d, side="right"))
                nonzero = numpy.flatnonzero(binned)
                for b, c in zip(nonzero.tolist(), binned[nonzero].tolist()):
                    counts[b] += c
                total, low, high = float(d.sum()), float(d.min()), float(d.max())
            self.n += len(taken)
            self.total += total
            self.low = min(self.low, low)
            self.high = max(self.high, high)

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
        import numpy  # tracing only
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
        """What a worker sends at the end of a call: count, sum, min, max and the non-empty bins."""
        self.fold()
        if not self.n:
            return {"n": 0, "sum": 0.0, "min": 0.0, "max": 0.0, "bins": []}
        return {"n": self.n, "sum": self.total, "min": self.low, "max": self.high,
                "bins": [[b, c] for b, c in enumerate(self.counts) if c]}

    def raw(self, rank: int, epoch: float):
        """This worker's trace events, for sending: (rank, starts since epoch, durations, first, last, spawned)."""
        import numpy  # tracing only

        def arr(a, dtype):
            return numpy.frombuffer(a, dtype=dtype).copy() if len(a) else numpy.empty(0, dtype)

        return (rank, arr(self.ev_start, numpy.float64) - epoch, arr(self.ev_dur, numpy.float32),
                arr(self.ev_first, numpy.int64), arr(self.ev_last, numpy.int64), dict(self.spawned))


MERGE_BELOW_S = 50e-6  # tasks shorter than this, run back to back, share one trace event


def merge_summaries(summaries) -> dict:
    """One distribution from the workers' summaries: count, mean, min, p50, p95, max (seconds).

    The percentiles are within a factor PERCENTILE_FACTOR of the exact ones (see the module docstring).
    """
    counts = [0] * _N_BINS
    n, total, low, peak = 0, 0.0, float("inf"), 0.0
    for s in summaries:
        for i, c in s["bins"]:
            counts[i] += c
        n += s["n"]
        total += s["sum"]
        peak = max(peak, s["max"])
        if s["n"]:
            low = min(low, s.get("min", 0.0))
    if n == 0:
        return {"count": 0, "mean": 0.0, "min": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    cum = list(itertools.accumulate(counts))

    def percentile(percent: int) -> float:
        rank = -(-percent * n // 100)  # ceil(q * n) in integers: no rounding at exact ranks
        i = bisect_left(cum, max(rank, 1))
        centre = math.sqrt(_EDGES[i] * _EDGES[i + 1])  # the bin's geometric centre
        return min(peak, max(low, centre))

    return {"count": n, "mean": total / n, "min": low, "p50": percentile(50), "p95": percentile(95), "max": peak}


def write_chrome_trace(path: str, timelines, metadata: dict | None = None) -> None:
    """Write the workers' timelines (``TaskTimes.raw``) as Chrome trace JSON (Perfetto opens it).

    Written as text line by line (not through dicts and json.dump): a trace has
    one event per task, and this is several times faster.
    """
    import numpy

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
