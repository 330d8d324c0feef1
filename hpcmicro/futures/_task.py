"""What a worker runs for a submitted call: unpickle it, run it, pickle what came of it.

A submitted call travels as bytes pickled on rank 0 at ``submit`` (so that an
argument that cannot be pickled fails that future there, not the engine), and
comes back as a tagged tuple, never as an exception: a task's own failure is
its future's exception, not the end of the call.

- ``(OK, bytes)``: the return value, pickled here (a value that cannot be
  pickled is that task's failure, named as such);
- ``(KEPT, RemoteValue)``: the return value, large, kept on this worker (_values.py);
- ``(FAILED, exc_bytes_or_None, traceback_text, exc_type_name, message)``;
- ``(BROKEN, traceback_text)``: the executor's initializer raised on this worker.
"""

from __future__ import annotations

import pickle
import time
import traceback

from . import _values

__all__ = ["OK", "FAILED", "BROKEN", "KEPT", "CANCELLED_CALL", "run_task", "pack_call"]

OK, FAILED, BROKEN, SKIPPED, KEPT = 0, 1, 2, 3, 4
CANCELLED_CALL = b""  # what a task cancelled before it left rank 0 carries instead: it runs nothing

_initialized: set = set()  # the executors whose initializer ran in this process
_broken: dict = {}  # executor id -> the initializer's traceback


RETRY_BACKOFF_S = 0.05  # the first retry's wait, doubling after each, as Runtime(retries=) does


# A function pickles by name, and pickling looks the name up to check it each time: a loop of submits
# of one function pickles it once (rank 0) and unpickles it once per worker (the bytes are the key).
_FN_CACHE_MAX = 256
_fn_bytes: dict = {}
_fn_objects: dict = {}


def pack_call(executor_id: int, initializer, initargs, fn, args, kwargs, retries: int = 0,
              keep_bytes: int | None = None, has_refs: bool = False) -> bytes:
    """What ``submit`` sends (raises whatever pickling raises).

    ``keep_bytes``: a result at least this large stays on its worker (None: always sent back);
    ``has_refs``: some arguments are RemoteValues, to be fetched before the call."""
    init = (initializer, tuple(initargs)) if initializer is not None else None
    if retries:
        fn = _Retried(fn, retries)
    return pickle.dumps((executor_id, init, _pickled_fn(fn), args, kwargs, keep_bytes, has_refs),
                        protocol=pickle.HIGHEST_PROTOCOL)


def _pickled_fn(fn) -> bytes:
    try:
        return _fn_bytes[fn]
    except (KeyError, TypeError):  # new, or unhashable (pickled every time)
        pass
    data = pickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        if len(_fn_bytes) >= _FN_CACHE_MAX:
            _fn_bytes.clear()
        _fn_bytes[fn] = data
    except TypeError:
        pass
    return data


def _unpickled_fn(data: bytes):
    fn = _fn_objects.get(data)
    if fn is None:
        fn = pickle.loads(data)
        if len(_fn_objects) >= _FN_CACHE_MAX:
            _fn_objects.clear()
        _fn_objects[data] = fn
    return fn


class _Retried:
    """``fn`` tried up to 1 + ``retries`` times, sleeping RETRY_BACKOFF_S (doubling) between tries."""

    def __init__(self, fn, retries: int):
        self.fn, self.retries = fn, retries

    def __call__(self, *args, **kwargs):
        wait = RETRY_BACKOFF_S
        for _ in range(self.retries):
            try:
                return self.fn(*args, **kwargs)
            except Exception:  # noqa: BLE001  (tried again; the last try's exception is the task's)
                time.sleep(wait)
                wait *= 2
        return self.fn(*args, **kwargs)


def run_task(blob: bytes):
    """The kernel of every submitted call."""
    if blob == CANCELLED_CALL:
        return (SKIPPED,)
    try:
        executor_id, init, fn_data, args, kwargs, keep_bytes, has_refs = pickle.loads(blob)
        fn = _unpickled_fn(fn_data)
    except BaseException as exc:  # noqa: BLE001  (e.g. a function the worker cannot import)
        return _failure(exc, "the call cannot be unpickled on the worker")
    if init is not None and executor_id not in _initialized:
        if executor_id in _broken:
            return (BROKEN, _broken[executor_id])
        try:
            init[0](*init[1])
        except BaseException:  # noqa: BLE001
            _broken[executor_id] = traceback.format_exc()
            return (BROKEN, _broken[executor_id])
        _initialized.add(executor_id)
    if has_refs:
        try:
            args, kwargs = _values.resolve(args, kwargs)
        except BaseException as exc:  # noqa: BLE001
            return _failure(exc, "an input kept on another worker could not be fetched")
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001  (SystemExit in a task is that task's failure too)
        return _failure(exc)
    try:
        kept, data = _values.keep_or_pickle(value, keep_bytes)
        return (KEPT if kept else OK, data)
    except BaseException as exc:  # noqa: BLE001
        return _failure(exc, f"the result ({type(value).__name__}) cannot be pickled to send back")


def _failure(exc: BaseException, context: str | None = None):
    text = traceback.format_exc()
    if context:
        text = f"{text}\n({context})"
    try:
        data = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)  # an exception that cannot be rebuilt is described instead
    except BaseException:  # noqa: BLE001
        data = None
    return (FAILED, data, text, type(exc).__name__, str(exc))
