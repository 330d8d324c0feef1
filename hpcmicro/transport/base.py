"""The transport seam: send, poll, wait, flush.

A driver moves messages between its protocol machine and a ``Transport``; the
machines never see which one. Two implementations: ``mpi.MPITransport``
(isend/improbe between ranks) and ``inproc.InprocWorld`` (queues between threads
of one process: one-rank runs, tests). Both deliver the messages of one sender
to one receiver in the order they were sent.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, NamedTuple

__all__ = ["Transport", "Envelope", "Backoff"]


class Envelope(NamedTuple):
    source: int
    tag: int
    body: Any
    nbytes: int  # size on the wire; 0 in-process


class Transport:
    """One endpoint. ``wakeup`` is set when something may be ready for this endpoint
    (a message arrived in-process, or the owner queued something to send), so
    ``wait`` returns early."""

    rank: int
    size: int
    wakeup: threading.Event

    def send(self, dest: int, tag: int, body) -> None:
        """Send without blocking; ``body`` then belongs to the receiver."""
        raise NotImplementedError

    def poll(self) -> Envelope | None:
        """The next message for this endpoint, or None at once."""
        raise NotImplementedError

    def wait(self) -> None:
        """Sleep until a message may have arrived (or a short while): never spin."""
        raise NotImplementedError

    def flush(self) -> None:
        """Return once every send so far has completed."""
        raise NotImplementedError


class Backoff:
    """Waiting between polls: yield the core for ``spin_s``, then sleep, doubling from ``tmin`` to ``tmax``.

    Ranks are often oversubscribed, so waiting must not burn a core; but a
    sleeping rank sees a reply only when its timer wakes it. So a waiter first
    only yields (``sched_yield``: any runnable rank on this core goes first)
    for ``spin_s`` after its last message, then sleeps; the cap bounds the
    latency a sleep adds to a reply.
    """

    __slots__ = ("tval", "tmin", "tmax", "spin_s", "spin_until")

    def __init__(self, tmax: float = 250e-6, tmin: float = 20e-6, spin_s: float = 2e-3):
        self.tmax = tmax
        self.tmin = tmin
        self.spin_s = spin_s
        self.tval = 0.0
        self.spin_until = 0.0

    def reset(self) -> None:
        self.tval = 0.0
        self.spin_until = 0.0

    def advance(self) -> float:
        """The wait to use now (0: only yield); sleeps double once the spin is over."""
        t = self.tval
        if t == 0.0:
            now = time.perf_counter()
            if self.spin_until == 0.0:
                self.spin_until = now + self.spin_s
            if now < self.spin_until:
                return 0.0
            t = self.tmin
        self.tval = min(self.tmax, t * 2.0)
        return t

    def sleep(self) -> None:
        t = self.advance()
        if t:
            time.sleep(t)
        else:
            os.sched_yield()
