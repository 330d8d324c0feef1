"""Writes checkpoints in a background thread so the master loop keeps serving workers."""

from __future__ import annotations

import threading
import time

from .checkpoint import write_checkpoint

__all__ = ["CheckpointWriter"]


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
        self.last_size = 0
        self.last_seconds = 0.0
        self.error: BaseException | None = None

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
            except BaseException as exc:  # reported by the next write_now/close
                self.error = exc

    def _write(self, calls) -> None:
        t0 = time.perf_counter()
        self.last_size = write_checkpoint(self.path, calls)
        self.last_seconds = time.perf_counter() - t0
        self.writes += 1

    def wait(self) -> None:
        thread = self._thread
        if thread is not None:
            thread.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def write_now(self, calls) -> None:
        with self._lock:
            self._queued = None  # superseded
        self.wait()
        self._write(list(calls))

    def close(self) -> None:
        self.wait()
