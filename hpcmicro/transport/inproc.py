"""Messages between threads of one process: a queue per endpoint.

Bodies are passed as they are, not copied: the engine's rule that a sent body
belongs to its receiver makes that safe (``RootRun.packed()`` detaches the runs
a sender keeps cutting). A send wakes the receiver at once, so nothing polls.
"""

from __future__ import annotations

import threading
from collections import deque

from .base import Envelope, Transport

__all__ = ["InprocWorld", "InprocTransport"]


class InprocWorld:
    """``size`` connected endpoints; ``world[r]`` is rank r's."""

    def __init__(self, size: int):
        self.endpoints = [InprocTransport(self, r, size) for r in range(size)]

    def __getitem__(self, rank: int) -> "InprocTransport":
        return self.endpoints[rank]


class InprocTransport(Transport):
    # Waits end at least this often even without a message: deadlines and signals are
    # looked at between waits.
    MAX_WAIT_S = 0.02

    def __init__(self, world: InprocWorld, rank: int, size: int):
        self._world = world
        self.rank = rank
        self.size = size
        self.wakeup = threading.Event()
        self._inbox: deque = deque()  # append/popleft are atomic: no lock needed

    def send(self, dest, tag, body) -> None:
        peer = self._world.endpoints[dest]
        peer._inbox.append(Envelope(self.rank, tag, body, 0))
        peer.wakeup.set()

    def poll(self) -> Envelope | None:
        try:
            return self._inbox.popleft()
        except IndexError:
            return None

    def wait(self) -> None:
        self.wakeup.wait(self.MAX_WAIT_S)
        self.wakeup.clear()

    def flush(self) -> None:
        pass
