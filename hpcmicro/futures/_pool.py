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
from concurrent.futures import BrokenExecutor, Future

from ..driver.opencall import OpenCall, serve_open_call
from ._task import BROKEN, CANCELLED_CALL, FAILED, OK, run_task

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
        self.call = OpenCall(rt, run_task, self._results, self._ended, on_dispatch=self._dispatched)

    @property
    def num_workers(self) -> int:
        comm = self.rt.comm
        return comm.size - 1 if comm.size > 1 else max(1, self.rt.options.inprocess_workers)

    def submit_one(self, future, blob: bytes, executor) -> None:
        """Submit one pickled call; ``future`` stays pending until its task is sent to a worker.

        ``executor`` hears of its task's end: ``_finished(future, result_bytes)``, ``_mark_broken(error)``."""
        futures = self._futures
        with self._lock:
            if self.ended.is_set():
                future.set_exception(self.error or BrokenExecutor("the executor's engine call has ended"))
                return
            self.call.submit_one(blob, lambda index: futures.__setitem__(index, (future, executor)))

    def close(self, wait: bool = True) -> None:
        self.call.close()
        if wait:
            self.call.join()

    @property
    def stats(self):
        return self.rt.stats

    # -- the master's thread -----------------------------------------------------------------
    def _dispatched(self, first: int, payloads: list) -> None:
        """Tasks leave the master's pool for a worker: running now, unless cancelled (then they run nothing)."""
        with self._lock:
            owed = [self._futures.get(first + k) for k in range(len(payloads))]
        for k, entry in enumerate(owed):
            if entry is not None and not entry[0].set_running_or_notify_cancel():
                payloads[k] = CANCELLED_CALL

    def _results(self, first: int, values: list) -> None:
        with self._lock:
            owed = [self._futures.pop(first + k) for k in range(len(values))]
        for (future, executor), value in zip(owed, values):
            if not future.cancelled():
                _resolve(future, value, executor)

    def _ended(self, error) -> None:
        if isinstance(error, SystemExit):  # Preempted: say why the program is about to stop
            sys.stderr.write(f"hpcmicro.futures: {error}; every pending future raises it\n")
            sys.stderr.flush()
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
    return serve_open_call(rt, run_task)
