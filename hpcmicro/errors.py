"""Exceptions that hpcmicro raises on every rank of a call."""

from __future__ import annotations

import signal as _signal

from .constants import EXIT_INTERRUPTED, EXIT_PREEMPTED

__all__ = ["HpcmicroError", "TaskError", "InvalidCall", "Preempted"]


class HpcmicroError(Exception):
    """Base class. ``collective`` is True when every rank raises the same error,
    so a Runtime leaving with it need not abort the MPI job."""

    collective = True


class InvalidCall(HpcmicroError, ValueError):
    """Bad input found before anything ran (bad op, policy, payload, ranks that disagree)."""


class TaskError(HpcmicroError):
    """A kernel raised. Carries where and why, so the user can rerun that task alone."""

    def __init__(self, task_id, payload_repr, rank, host, remote_traceback, exc_type="Exception"):
        self.task_id = tuple(task_id)
        self.payload_repr = payload_repr
        self.rank = rank
        self.host = host
        self.remote_traceback = remote_traceback
        self.exc_type = exc_type
        super().__init__(
            f"task {self.task_id} failed on rank {rank} ({host}): {exc_type}; "
            f"payload {payload_repr}\n--- remote traceback ---\n{remote_traceback}"
        )

    def __reduce__(self):
        return (
            type(self),
            (self.task_id, self.payload_repr, self.rank, self.host, self.remote_traceback, self.exc_type),
        )


class Preempted(HpcmicroError, SystemExit):
    """The run was asked to stop (SIGTERM/SIGUSR1) and saved its progress.

    Raised on every rank. Left uncaught it ends the process with status 75
    (EX_TEMPFAIL), which a batch script takes as "requeue me": it is also a
    SystemExit whose code is 75.
    """

    exit_status = EXIT_PREEMPTED

    def __init__(self, message: str, signum: int = 0, checkpoint: str | None = None):
        HpcmicroError.__init__(self, message)
        # Ctrl-C ends with 130 (it was the user, not the scheduler: nothing requeues it).
        self.code = EXIT_INTERRUPTED if signum == _signal.SIGINT else self.exit_status
        self.signum = signum
        self.checkpoint = checkpoint

    def __str__(self):
        return self.args[0] if self.args else "preempted"

    def __reduce__(self):
        return (type(self), (str(self), self.signum, self.checkpoint))
