"""Messages between MPI ranks: ``isend`` (never blocks, so two ranks sending large
messages to each other cannot deadlock) and matched probes (``improbe``), with
back-off while nothing arrives (MPI cannot wake a sleeping rank, so it polls, at
most every ``max_wait`` seconds)."""

from __future__ import annotations

import os
import threading

from .base import Backoff, Envelope, Transport

__all__ = ["MPITransport"]

# Completed sends are released in batches: testing each one costs more than it saves.
RELEASE_EVERY = 64


class MPITransport(Transport):
    def __init__(self, comm, max_wait: float = 250e-6, spin_s: float = 2e-3):
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = comm
        self.rank = comm.rank
        self.size = comm.size
        self.wakeup = threading.Event()
        self._status = MPI.Status()
        self._pending: list = []
        self._backoff = Backoff(tmax=max_wait, spin_s=spin_s)

    def send(self, dest, tag, body) -> None:
        pending = self._pending
        pending.append(self.comm.isend(body, dest=dest, tag=tag))
        if len(pending) > RELEASE_EVERY and self._MPI.Request.Testall(pending):
            pending.clear()

    def poll(self) -> Envelope | None:
        status = self._status
        msg = self.comm.improbe(status=status)
        if msg is None:
            return None
        self._backoff.reset()
        body = msg.recv()
        return Envelope(status.source, status.tag, body, status.Get_count(self._MPI.BYTE))

    def wait(self) -> None:
        t = self._backoff.advance()
        if t:
            self.wakeup.wait(t)
        else:
            os.sched_yield()
        self.wakeup.clear()

    def flush(self) -> None:
        self._MPI.Request.Waitall(self._pending)
        self._pending.clear()
