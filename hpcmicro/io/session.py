"""The checkpoint bookkeeping of one Runtime: which calls are stored, which are done, the latest cut.

Lives on the master rank. ``begin_call`` resets the per-call state, so a cut of
one call can never be taken for another's (a ULFM rollback early in call N
resumes from call N's cut or from its start, never from call N-1's).
"""

from __future__ import annotations

import os

from ..codehash import describe_changes
from ..engine.cut import CallState
from .checkpoint import CheckpointError, check_writable, read_checkpoint
from .checkpoint_writer import CheckpointWriter

__all__ = ["CheckpointSession"]


class CheckpointSession:
    """``path`` None: no file, but cuts are still kept (the in-memory rollback point under ULFM)."""

    def __init__(self, path: str | None, resume: bool = True):
        self.path = path
        self.writer = CheckpointWriter(path) if path else None
        self.stored: list[CallState] = []  # calls found in the file at open
        self.done: list[CallState] = []  # calls of this run, complete, written with every checkpoint
        self.index = -1
        self.identity = ""
        self.code: dict = {}
        self.last_cut: CallState | None = None  # the latest consistent cut of the running call
        if path:
            check_writable(path)  # a folder that is missing or read-only: now, not at the first write
        if path and resume and os.path.exists(path):
            try:
                _, self.stored = read_checkpoint(path)
            except CheckpointError as exc:
                raise CheckpointError(f"{exc}; pass resume=False to start afresh") from None

    def stored_call(self, index: int, identity: str, code: dict) -> CallState | None:
        """Call ``index``'s entry in the loaded checkpoint, checked to be the same job run by the same code."""
        if index >= len(self.stored):
            return None
        state = self.stored[index]
        if state.identity != identity:
            raise CheckpointError(
                f"{self.path}: call {index} in the checkpoint belongs to a different job "
                f"(kernel, tasks, op or on_error differ); pass resume=False to start afresh"
            )
        if state.code != code:
            # Resuming would mix results of the old and the new code; replaying a complete call
            # would return the old code's result for the new code.
            raise CheckpointError(
                f"{self.path}: call {index}'s code changed since the checkpoint was written "
                f"({describe_changes(state.code, code)}), so its stored results came from other code: "
                f"restore that code, or pass resume=False to start afresh"
            )
        return state

    def begin_call(self, index: int, identity: str, code: dict) -> None:
        self.index, self.identity, self.code = index, identity, code
        self.last_cut = None

    def on_cut(self, cut) -> None:
        """A ``CutReady`` of the running call: keep it, and write it (now, if it is the final one)."""
        state = cut.state
        state.index, state.identity, state.code = self.index, self.identity, self.code
        self.last_cut = state
        if self.writer is None:
            return
        if cut.reason == "preempt":
            self.writer.write_now(self.done + [state])
        else:
            self.writer.submit(self.done + [state])

    def replayed(self, stored: CallState) -> None:
        """A call that had completed before the restart: it stays in the file."""
        self.done.append(stored)

    def complete(self, state: CallState) -> None:
        """The running call finished: store its result (and wait until it is on disk)."""
        state.index, state.identity, state.code = self.index, self.identity, self.code
        self.done.append(state)
        self.last_cut = None
        if self.writer is not None:
            self.writer.write_now(self.done)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
