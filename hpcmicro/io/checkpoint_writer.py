"""Writes checkpoints in a background thread so the master loop keeps serving workers.

A background write that fails is logged at once (the ``hpcmicro`` logger, naming
the file and the error); the writer keeps trying with later cuts, since a full
disk may recover. A write that must land (``write_now``: the end of a call, a
preemption) raises CheckpointError naming the file when it fails.
"""

from __future__ import annotations

import logging
import threading
import time

from .checkpoint import CheckpointError, write_checkpoint

__all__ = ["CheckpointWriter"]

log = logging.getLogger("hpcmicro")


class CheckpointWriter:
    """One writer per checkpoint file. ``submit`` queues a write and returns at
    once (a newer state replaces one not yet started: only the latest matters);
    ``write_now`` writes and returns when the file is on disk."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._queued: list | None = None
        self._thread: threading.Thread | None = None
        self.writes = 0
        self.failures = 0  # background writes that failed
        self.last_size = 0
        self.last_seconds = 0.0
        self.error: CheckpointError | None = None  # the latest background failure

    def submit(self, calls) -> None:
        with self._lock:
            self._queued = list(calls)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._drain, name="hpcmicro-checkpoint", daemon=True)
                self._thread.start()

    def _drain(self) -> None:
        while True:
            with self._lock:
                calls, self._queued = self._queued, None
            if calls is None:
                return
            try:
                self._write(calls)
            except CheckpointError as exc:
                if self.error is None or str(exc) != str(self.error):  # say it once, not at every cut
                    log.warning("hpcmicro: %s (the run goes on; the last checkpoint on disk is older)", exc)
                self.error = exc
                self.failures += 1
            else:
                self.error = None

    def _write(self, calls) -> None:
        t0 = time.perf_counter()
        try:
            self.last_size = write_checkpoint(self.path, calls)
        except Exception as exc:  # OSError (folder gone, disk full), an unpicklable value, ...
            error = CheckpointError(f"{self.path}: cannot write the checkpoint: {type(exc).__name__}: {exc}")
            error.collective = False  # raised on the master alone: a Runtime leaving with it aborts the job
            raise error from exc
        self.last_seconds = time.perf_counter() - t0
        self.writes += 1

    def wait(self) -> None:
        """Wait for the background write in progress, if any."""
        thread = self._thread
        if thread is not None:
            thread.join()

    def write_now(self, calls) -> None:
        """Write ``calls`` and return once they are on disk; CheckpointError naming the file if that fails."""
        with self._lock:
            self._queued = None  # superseded
        self.wait()
        self._write(list(calls))
        self.error = None

    def close(self) -> None:
        self.wait()
