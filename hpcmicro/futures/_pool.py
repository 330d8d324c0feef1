"""The pool behind every executor: one open-ended engine call, and the futures it owes.

``Pool`` runs on rank 0 (``OpenCall``); it numbers each submitted call by
the root task that carries it and resolves that task's future when the
result comes. Every other rank runs ``serve(rt)`` for the same call.
"""

from __future__ import annotations

import io
import pickle
import sys
import threading
import weakref
from concurrent.futures import BrokenExecutor, Future

from ..driver.opencall import OpenCall, serve_open_call
from ._task import BROKEN, CANCELLED_CALL, FAILED, KEPT, OK, run_task
from ._values import ValueService

__all__ = ["Pool", "RemoteTraceback", "serve"]


class RemoteTraceback(Exception):
    """The traceback of a task's exception on its worker, attached as the exception's ``__cause__``."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return self.tb


class Pool:
    """Rank 0: submits pickled calls into the open-ended call of ``rt`` and resolves their futures."""

    def __init__(self, rt):
        self.rt = rt
        self._lock = threading.Lock()
        self._futures: dict[int, tuple] = {}  # task index -> (future, its executor)
        self.error: BaseException | None = None  # what ended the call early (a dead rank, preemption)
        self.ended = threading.Event()
        # Large results stay on their workers (_values.py); a duplicate communicator carries them (collective:
        # every worker's serve() makes its own).
        self.values = ValueService(rt.comm.Dup()) if rt.comm.size > 1 else None
        self._kept: weakref.WeakSet = weakref.WeakSet()  # futures whose result is still on a worker
        self.worker_values: list = []  # each worker's value statistics, after a clean end
        self.call = OpenCall(rt, run_task, self._results, self._ended, on_dispatch=self._dispatched)

    @property
    def num_workers(self) -> int:
        comm = self.rt.comm
        return comm.size - 1 if comm.size > 1 else max(1, self.rt.options.inprocess_workers)

    def submit_one(self, future, blob: bytes, executor) -> None:
        """Submit one pickled call; ``future`` stays pending until its task is sent to a worker.

        ``executor`` hears of its task's end: ``_finished(future, result_bytes)``, ``_mark_broken(error)``."""
        futures = self._futures
        if self.values is not None:
            self.values.flush_frees()  # workers drop the kept values whose futures are gone
        with self._lock:
            if self.ended.is_set():
                future.set_exception(self.error or BrokenExecutor("the executor's engine call has ended"))
                return
            self.call.submit_one(blob, lambda index: futures.__setitem__(index, (future, executor)))

    def close(self, wait: bool = True, fetch_kept: bool = True) -> None:
        """End the call; ``fetch_kept``: results still kept on workers are fetched here first, so that
        ``result()`` works after the pool is gone (not worth it when the program ends)."""
        self.call.close()
        if not wait:
            return
        self.call.join()
        values = self.values
        if values is None:
            return
        if fetch_kept and self.error is None:
            for future in list(self._kept):
                try:
                    future.result()
                except BaseException:  # noqa: BLE001  (result() raises it again later)
                    pass
        self.worker_values = values.stop_workers(clean=self.error is None)

    @property
    def stats(self):
        return self.rt.stats

    # -- the master's thread -----------------------------------------------------------------
    def _dispatched(self, first: int, payloads: list) -> None:
        """Tasks leave the master's pool for a worker: running now, unless cancelled (then they run nothing)."""
        with self._lock:
            owed = [self._futures.get(first + k) for k in range(len(payloads))]
        for k, entry in enumerate(owed):
            if entry is not None and not _start(entry[0]):
                payloads[k] = CANCELLED_CALL

    def _results(self, first: int, values: list) -> None:
        with self._lock:
            owed = [self._futures.pop(first + k) for k in range(len(values))]
        for (future, executor), value in zip(owed, values):
            if future.cancelled():
                continue
            if value[0] == KEPT:
                self._resolve_kept(future, value[1])
            else:
                _resolve(future, value, executor)

    def _resolve_kept(self, future, ref) -> None:
        """The result stays on its worker: the future holds the reference, fetched on ``result()``."""
        values = self.values
        if values is None:  # cannot happen: workers keep values only in a pool that has a service
            future.set_exception(RuntimeError("internal error: a kept result in a pool without workers"))
            return
        future._ref, future._values = ref, values
        weakref.finalize(future, values.free, ref.owner, ref.key)
        self._kept.add(future)
        future.set_result(ref)

    def _ended(self, error) -> None:
        if isinstance(error, SystemExit):  # Preempted: say why the program is about to stop
            sys.stderr.write(f"hpcmicro.futures: {error}; every pending future raises it\n")
            sys.stderr.flush()
        if error is not None and self.values is not None:
            self.values.broken = error  # fetches from workers fail with it instead of waiting
        with self._lock:
            self.error = error
            self.ended.set()
            owed, self._futures = list(self._futures.values()), {}
        for future, _ in owed:
            if not future.done():
                future.set_exception(error if error is not None else
                                     BrokenExecutor("the engine call ended before this task ran"))


def _resolve(future: Future, value, executor) -> None:
    status = value[0]
    if status == OK:
        try:
            result = loads(value[1])
        except BaseException as exc:  # noqa: BLE001  (a class rank 0 cannot import)
            future.set_exception(exc)
            return
        if executor is not None:
            executor._finished(future, value[1])
        future.set_result(result)
    elif status == FAILED:
        future.set_exception(rebuild_exception(*value[1:]))
    elif status == BROKEN:
        error = BrokenExecutor("the executor's initializer raised on a worker")
        error.__cause__ = RemoteTraceback(value[1])
        future.set_exception(error)
        if executor is not None:
            executor._mark_broken(error)
    else:
        future.set_exception(RuntimeError(f"internal error: unknown task status {status!r}"))


def rebuild_exception(data, tb: str, type_name: str, message: str) -> BaseException:
    """The task's exception as raised on its worker, its traceback attached as ``__cause__``."""
    exc: BaseException
    try:
        exc = loads(data) if data is not None else RuntimeError(f"{type_name}: {message}")
    except BaseException:  # noqa: BLE001
        exc = RuntimeError(f"{type_name}: {message}")
    exc.__cause__ = RemoteTraceback(tb)
    return exc


class _MainUnpickler(pickle.Unpickler):
    """Workers import the program as ``__worker__`` (python -m hpcmicro.futures): its classes are rank 0's
    ``__main__`` ones."""

    def find_class(self, module, name):
        return super().find_class("__main__" if module == "__worker__" else module, name)


def loads(data: bytes):
    if b"__worker__" not in data:  # the common case: no class of the program's own
        return pickle.loads(data)
    return _MainUnpickler(io.BytesIO(data)).load()


def serve(rt):
    """A worker rank: run submitted tasks until rank 0 closes the call; returns the call's Outcome."""
    values = ValueService(rt.comm.Dup())
    values.start_serving()
    outcome = None
    try:
        outcome = serve_open_call(rt, run_task)
    finally:
        values.finish(clean=outcome is not None and outcome.error is None)
    return outcome


def _start(future) -> bool:
    """Mark ``future`` running; False if it was cancelled. A task sent again (its first try overran
    ``task_timeout`` or its worker died) finds its future already running: it simply runs again."""
    if future.running() or (future.done() and not future.cancelled()):
        return True
    if future.cancelled():
        # cancelled after an earlier dispatch already notified it: never set_running twice
        return future.set_running_or_notify_cancel() if future._state == "CANCELLED" else False
    return future.set_running_or_notify_cancel()
