"""Message tags, message shapes and the waiting primitive, in one place.

Messages are small tuples pickled by mpi4py; every send is non-blocking
(``isend``) so two ranks sending large messages to each other never deadlock.

master -> worker    TASKS     (seq, entries)  entries: RootRun/Spawned; seq counts master sends
worker -> worker    TASKS     (None, entries) a steal answer (may be empty)
master -> victim    STEAL     thief_rank
master -> worker    ABORT     None            drop the queue, stop running tasks
master -> worker    DRAIN     None            start no new task (preemption)
master -> worker    SNAPSHOT  None            report pending tasks and finished results now
master -> worker    STOP      Stop            leave the loop (the call ends)
worker -> master    REPORT    Report          counts, results, acks, requests, snapshots
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

__all__ = ["Tag", "State", "Report", "Stop", "Backoff"]


class Tag:
    TASKS = 11
    STEAL = 12
    ABORT = 13
    STOP = 14
    REPORT = 15
    DRAIN = 16
    SNAPSHOT = 17


class State:
    """What a worker tells the master about itself in a report."""

    BUSY = 0  # a periodic status: no request
    LOW = 1  # queue below its low-water mark: send more if you have it
    IDLE = 2  # queue empty: send work or broker a steal
    DRAINED = 3  # draining for preemption: no task running, none will start
    RETIRED = 4  # a kernel overran task_timeout: all other work handed back


class Report(NamedTuple):
    state: int
    seq_seen: int  # TASKS messages received from the master so far
    done: int  # tasks finished since the last report
    spawned: int  # tasks created by those tasks
    queued: int  # tasks waiting in the local queue now
    mean_task_s: float  # mean kernel time so far (0.0: none measured yet)
    results: tuple | None  # map mode: (root_segments, spawned_results)
    acks: tuple  # ranks whose steal answers arrived since the last report
    aborted: bool  # this worker has processed ABORT
    error: dict | None  # a kernel raised: what, where
    failed: tuple = ()  # (task_id, traceback) of tasks skipped after their last retry
    snapshot: dict | None = None  # the answer to SNAPSHOT: {"pending": entries, "tree": (lengths, blocks)}
    handback: tuple | None = None  # a hung worker's (entries, tree part) for others to run
    signal: int = 0  # a preemption signal this rank received


class Stop(NamedTuple):
    """How a call ended: kind is "ok", "error" (info: the error dict) or "preempted" (info: signal)."""

    kind: str
    info: Any


class Backoff:
    """Sleep between polls: 0 first, then doubling from ``tmin`` up to ``tmax``.

    Ranks are often oversubscribed, so waiting must not burn a core; the cap
    bounds the latency this adds to a reply.
    """

    __slots__ = ("tval", "tmin", "tmax")

    def __init__(self, tmax: float = 0.001, tmin: float = 1e-6):
        self.tmax = tmax
        self.tmin = tmin
        self.tval = 0.0

    def reset(self) -> None:
        self.tval = 0.0

    def advance(self) -> float:
        """The wait to use now; the next one doubles."""
        t = self.tval
        self.tval = min(self.tmax, max(self.tmin, self.tval * 2.0))
        return t

    def sleep(self) -> None:
        time.sleep(self.advance())
