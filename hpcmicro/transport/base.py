"""The transport seam: send, poll, wait, flush.

A driver moves messages between its protocol machine and a ``Transport``; the
machines never see which one. Two implementations: ``mpi.MPITransport``
(isend/improbe between ranks) and ``inproc.InprocWorld`` (queues between threads
of one process: one-rank runs, tests). Both deliver the messages of one sender
to one receiver in the order they were sent.
"""

from __future__ import annotations

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
