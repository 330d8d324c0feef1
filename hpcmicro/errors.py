"""Exceptions that hpcmicro raises on every rank of a call."""

from __future__ import annotations

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


class Preempted(HpcmicroError):
    """The run was asked to stop (SIGTERM/SIGUSR1); a checkpoint holds its progress."""

    exit_status = 75  # EX_TEMPFAIL: the batch script requeues on it
