"""Preemption signals: SIGTERM and SIGUSR1 ask the run to checkpoint and stop.

Slurm sends SIGTERM before killing a job at its time limit or on preemption,
and ``--signal=B:USR1@N`` sends SIGUSR1 N seconds before. The handler only
records the signal; the master acts on it (a worker's mailbox thread forwards
it to the master).
"""

from __future__ import annotations

import signal
import threading

__all__ = ["install", "uninstall", "requested", "clear"]

PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

_requested = 0
_previous: dict = {}


def _handler(signum, frame):
    global _requested
    if not _requested:
        _requested = signum


def install() -> None:
    """Install the handlers (main thread only; elsewhere signals stay as they are)."""
    if threading.current_thread() is not threading.main_thread() or _previous:
        return
    for sig in PREEMPT_SIGNALS:
        _previous[sig] = signal.signal(sig, _handler)


def uninstall() -> None:
    for sig, old in _previous.items():
        signal.signal(sig, old)
    _previous.clear()


def requested() -> int:
    """The preemption signal received, or 0."""
    return _requested


def clear() -> None:
    global _requested
    _requested = 0
