"""Preemption signals: SIGTERM and SIGUSR1 ask the run to checkpoint and stop.

Slurm sends SIGTERM before killing a job at its time limit or on preemption,
and ``--signal=B:USR1@N`` sends SIGUSR1 N seconds before. Ctrl-C (SIGINT) is
taken the same way (a final checkpoint, then ``hm.Preempted`` with exit status
130); a second Ctrl-C raises KeyboardInterrupt at once. The handler only
records the signal; the master acts on it (a worker's mailbox thread forwards
it to the master).

When a request ends: a runtime that reads a request (``requested()`` non-zero)
acts on it, so once read it belongs to that Runtime and ``uninstall()`` (at its
close) clears it; a second Runtime in the same process then runs normally. A
request no runtime has read yet (it arrived after the Runtime's last check, say
between its last call and close) is kept: the scheduler still means to stop
the job, so the next Runtime in this process stops at its first check instead
of starting work that would be killed without a checkpoint. Between two
Runtimes the previous handlers are in place, so a signal then is not recorded.
"""

from __future__ import annotations

import signal
import threading

__all__ = ["install", "uninstall", "requested", "pending", "clear"]

PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)

_requested = 0  # the first preemption signal received, or 0
_read = False  # a runtime has seen _requested, so it is acting on it
_previous: dict = {}


def _handler(signum, frame):
    global _requested
    if signum == signal.SIGINT and _requested == signal.SIGINT:
        raise KeyboardInterrupt  # Ctrl-C twice: stop now, without the final checkpoint
    if not _requested:
        _requested = signum


def install() -> None:
    """Install the handlers (main thread only; elsewhere signals stay as they are)."""
    if threading.current_thread() is not threading.main_thread() or _previous:
        return
    for sig in PREEMPT_SIGNALS:
        _previous[sig] = signal.signal(sig, _handler)


def uninstall() -> None:
    """Restore the previous handlers; forget a request that was read (see the module docstring)."""
    for sig, old in _previous.items():
        signal.signal(sig, old)
    _previous.clear()
    if _read:
        clear()


def requested() -> int:
    """The preemption signal received, or 0. Reading a non-zero value hands the
    request to the caller, which must act on it (stop the call)."""
    global _read
    value = _requested  # read once: the handler may set it at any bytecode
    if value:
        _read = True
    return value


def pending() -> bool:
    """Whether a request is waiting, without taking it (cheap enough to ask between tasks)."""
    return _requested != 0


def clear() -> None:
    """Forget the request."""
    global _requested, _read
    _requested, _read = 0, False
