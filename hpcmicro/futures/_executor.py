"""``MPIPoolExecutor`` and ``MPICommExecutor``: ``concurrent.futures`` executors on the stealing engine.

Every ``submit`` becomes one root task of the pool's open-ended call
(``_pool.Pool``). A future of this module passed as an argument (at top
level, or as an item of a list, tuple or dict argument) is a dependency: the
task is held on rank 0 until its inputs are done, then their values are
substituted and it is submitted. A failed input fails its dependents with
``DependencyError``, a cancelled one cancels them.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import weakref
from concurrent import futures as _cf

from ._pool import Pool, loads
from . import _values
from ._store import ResultStore, identity
from ._task import pack_call
from ._values import RemoteValue
from ._workers import release_workers, split_workers

__all__ = ["MPIPoolExecutor", "MPICommExecutor", "DependencyError", "TaskFuture"]

_ids = itertools.count(1)

# map(chunksize=1): how many chunks per worker it makes of the calls, at most MAX_AUTO_CHUNK calls each.
CHUNKS_PER_WORKER = 16
MAX_AUTO_CHUNK = 1024


class DependencyError(Exception):
    """A task's input failed (its exception is this one's ``__cause__``), so the task never ran."""


class TaskFuture(_cf.Future):
    """A future of an hpcmicro executor; ``name`` says which submitted call it is (``fn#n``); ``identity``
    (when checkpointing) is its task's identity (_store.py)."""

    identity = b""
    _fn: object = None
    _number = 0
    _ref = None  # the RemoteValue of a result kept on its worker (_values.py)
    _values = None  # the ValueService to fetch it through
    _inputs: list | None = None  # a dependent's input futures, held until it is done (their values must live)

    def result(self, timeout=None):
        value = super().result(timeout)
        if type(value) is RemoteValue:  # kept on its worker: fetched the first time it is asked for
            with self._condition:
                value = self._result
                if type(value) is RemoteValue:
                    value = self._result = self._values.fetch(value)
        return value

    @property
    def name(self) -> str:  # built when asked for (an error message): not once per submit
        fn = self._fn
        return f"{getattr(fn, '__qualname__', type(fn).__name__)}#{self._number}"


class _Executor(_cf.Executor):
    """What both executors share; ``_pool()`` gives the Pool to submit to."""

    def __init__(self, initializer=None, initargs=(), checkpoint=None, retries: int = 0):
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable, got {initializer!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        self._retries = retries
        checkpoint = checkpoint if checkpoint is not None else os.environ.get("HPCMICRO_FUTURES_CHECKPOINT") or None
        # Finished tasks' results on disk (_store.py): a rerun resolves those from there, without a task.
        self._store = ResultStore(checkpoint) if checkpoint else None
        self._id = next(_ids)
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._lock = threading.Lock()
        self._shutdown = False
        self._broken: BaseException | None = None
        # Futures of this executor, for shutdown. Weak: a future not done is held by the pool (or _held) anyway,
        # and a done one the program dropped must go, so that a result kept on a worker is freed there.
        self._pending: weakref.WeakSet = weakref.WeakSet()
        self._held: set = set()  # of those, the ones waiting for their inputs
        self._count = itertools.count(1)

    def _pool(self) -> Pool:
        raise NotImplementedError

    @property
    def num_workers(self) -> int:
        """The workers tasks run on (0 once the initializer has broken the executor)."""
        return 0 if self._broken is not None else self._pool().num_workers

    def bootup(self, wait: bool = True):
        """Start the pool now instead of at the first submit (mpi4py's name); returns the executor."""
        if self._shutdown:
            raise RuntimeError("cannot boot up after shutdown")
        self._pool()
        return self

    # -- submitting ------------------------------------------------------------------------
    def submit(self, fn, /, *args, **kwargs) -> TaskFuture:
        if not callable(fn):
            raise TypeError(f"submit() needs a callable, got {fn!r}")
        with self._lock:
            if self._broken is not None:
                raise _cf.BrokenExecutor(str(self._broken)) from self._broken
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future = TaskFuture()
            future._fn = fn
            future._number = next(self._count)
            self._pending.add(future)
        inputs = _inputs(args, kwargs)
        if self._store is not None:
            try:
                future.identity = identity(fn, args, kwargs, {id(d): d.identity for d in inputs})
            except BaseException as exc:  # noqa: BLE001  (an argument that cannot be pickled)
                future.set_running_or_notify_cancel()
                future.set_exception(exc)
                return future
        if not inputs:
            self._send(future, fn, args, kwargs)
            return future
        with self._lock:
            self._held.add(future)
        future._inputs = inputs
        future.add_done_callback(_drop_inputs)
        waiting = _Waiting(self, future, fn, args, kwargs, inputs)
        for dep in inputs:
            dep.add_done_callback(waiting.input_done)
        return future

    def _release(self, future, fn, args, kwargs, inputs) -> None:
        """Every input of a held task is done: submit it with their values, or fail or cancel it."""
        with self._lock:
            self._held.discard(future)
        if future.done():  # cancelled while it waited
            return
        for dep in inputs:
            if dep.cancelled():
                future.cancel()
                return
            exc = dep.exception()
            if exc is not None:
                error = DependencyError(f"input {dep.name} of {future.name} failed: {type(exc).__name__}: {exc}")
                error.__cause__ = exc
                future.set_exception(error)
                return
        values = self._pool().values
        refs: list = []

        def value_of(dep):  # a result kept on a worker goes as its reference: the dependent's worker fetches it
            if dep._ref is not None and dep._values is values:
                refs.append(dep._ref)
                return dep._ref
            return dep.result()

        args = tuple(_substitute(a, value_of) for a in args)
        kwargs = {k: _substitute(v, value_of) for k, v in kwargs.items()}
        self._send(future, fn, args, kwargs, has_refs=bool(refs))

    def _send(self, future, fn, args, kwargs, has_refs: bool = False) -> None:
        if future.done():  # cancelled
            return
        if self._store is not None:
            stored = self._store.get(future.identity)
            if stored is not None and future.set_running_or_notify_cancel():
                future.set_result(loads(stored))  # finished in an earlier run: not computed again
                return
        try:
            keep = None if self._store is not None else _values.KEEP_BYTES  # a checkpoint stores results on rank 0
            blob = pack_call(self._id, self._initializer, self._initargs, fn, args, kwargs, self._retries,
                             keep, has_refs)
        except BaseException as exc:  # noqa: BLE001  (an argument that cannot be pickled fails its future)
            future.set_exception(exc)
            return
        self._pool().submit_one(future, blob, self)

    def _finished(self, future, result_bytes: bytes) -> None:
        """A task's result came (the master's thread): keep it on disk, if checkpointing."""
        if self._store is not None:
            self._store.add(future.identity, result_bytes)

    def _mark_broken(self, error: BaseException) -> None:
        with self._lock:
            self._broken = error

    # -- map ---------------------------------------------------------------------------------
    def map(self, fn, *iterables, timeout=None, chunksize=1, buffersize=None, unordered=False):
        """Like ``concurrent.futures.Executor.map``: ``chunksize`` calls go in one task; at most ``buffersize``
        tasks are submitted ahead of the consumer; ``unordered``: results as they finish."""
        return self.starmap(fn, zip(*iterables), timeout=timeout, chunksize=chunksize, buffersize=buffersize,
                            unordered=unordered)

    def starmap(self, fn, iterable, timeout=None, chunksize=1, buffersize=None, unordered=False):
        """``fn(*args)`` for each ``args`` of ``iterable``, as ``map`` gives them."""
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be an int >= 1, got {chunksize!r}")
        if buffersize is not None:
            if not isinstance(buffersize, int):
                raise TypeError(f"buffersize must be an int or None, got {type(buffersize).__name__}")
            if buffersize < 1:
                raise ValueError(f"buffersize must be >= 1, got {buffersize}")
            if unordered:
                raise ValueError("buffersize cannot be combined with unordered=True")
        deadline = None if timeout is None else time.monotonic() + timeout
        it = iter(iterable)
        if chunksize == 1 and buffersize is None:
            # No tuning needed: calls go in chunks of about 1/CHUNKS_PER_WORKER of a worker's share, so a
            # loop of tiny calls pays the per-task cost once a chunk, and stealing still balances chunks.
            items = list(it)
            chunksize = max(1, min(MAX_AUTO_CHUNK, len(items) // (CHUNKS_PER_WORKER * max(1, self.num_workers))))
            it = iter(items)
        if chunksize == 1:
            calls = ((fn, args) for args in it)
        else:
            calls = ((_run_chunk, (fn, chunk)) for chunk in iter(lambda: list(itertools.islice(it, chunksize)), []))
        if buffersize is None:
            return _yield([self.submit(f, *a) for f, a in calls], deadline, unordered, chunksize > 1)
        return _yield_buffered(self, calls, buffersize, deadline, chunksize > 1)

    # -- the end -----------------------------------------------------------------------------
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            pending = [f for f in self._pending if not f.done()]
        if cancel_futures:  # those not sent to a worker yet (held for their inputs, or in the master's pool)
            for future in pending:
                future.cancel()
        if wait and pending:
            _cf.wait(pending)
        if self._store is not None and (wait or not pending):
            self._store.close()  # whatever finished is on disk now
        self._after_shutdown(wait)

    def _after_shutdown(self, wait: bool) -> None:
        pass


def _run_chunk(fn, chunk):
    return [fn(*args) for args in chunk]


def _yield(fs, deadline, unordered, chunked, refill=None):
    """The results of ``fs``, in order or as they finish, cancelling the rest if the consumer stops.

    ``refill()`` (in order only): the next future to add behind the others as each is taken, or None."""
    try:
        if unordered:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            for f in _cf.as_completed(fs, timeout=timeout):
                yield from (f.result() if chunked else [f.result()])
            return
        fs.reverse()
        while fs:
            f = fs.pop()
            nxt = refill() if refill is not None else None
            if nxt is not None:
                fs.insert(0, nxt)
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            value = f.result(timeout)
            if chunked:
                yield from value
            else:
                yield value
    finally:
        for f in fs:
            f.cancel()


def _yield_buffered(executor, calls, buffersize, deadline, chunked):
    """In order, with at most ``buffersize`` tasks submitted and not yet consumed: one in as one goes out."""
    fs = [executor.submit(f, *a) for f, a in itertools.islice(calls, buffersize)]

    def refill():
        for fn, args in itertools.islice(calls, 1):
            return executor.submit(fn, *args)
        return None

    return _yield(fs, deadline, False, chunked, refill)


def _inputs(args, kwargs) -> list:
    """This module's futures among the arguments (top level, or items of list/tuple/dict arguments)."""
    found: dict = {}
    for value in itertools.chain(args, kwargs.values()):
        for item in _items(value):
            if isinstance(item, TaskFuture):
                found[id(item)] = item
    return list(found.values())


def _items(value):
    if isinstance(value, TaskFuture):
        return (value,)
    if isinstance(value, (list, tuple)):
        return value
    if isinstance(value, dict):
        return value.values()
    return ()


def _substitute(value, value_of):
    """``value`` with each future in it (as ``_items`` finds them) replaced by ``value_of(future)``."""
    if isinstance(value, TaskFuture):
        return value_of(value)
    if isinstance(value, list):
        return [value_of(v) if isinstance(v, TaskFuture) else v for v in value]
    if isinstance(value, tuple):
        items = [value_of(v) if isinstance(v, TaskFuture) else v for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)  # a named tuple keeps its type
    if isinstance(value, dict):
        return {k: value_of(v) if isinstance(v, TaskFuture) else v for k, v in value.items()}
    return value


class _Waiting:
    """A held task counting its inputs down; let go of the call once released. (The inputs' callbacks hold
    this: a closure would keep every argument alive, and through them a whole DAG's futures, and the results
    those keep on workers.)"""

    def __init__(self, executor, future, fn, args, kwargs, inputs):
        self.left = len(inputs)
        self.lock = threading.Lock()
        self.call: tuple | None = (executor, future, fn, args, kwargs, inputs)

    def input_done(self, _) -> None:
        with self.lock:
            self.left -= 1
            if self.left:
                return
            call, self.call = self.call, None
        if call is not None:
            executor, *rest = call
            executor._release(*rest)


def _drop_inputs(future) -> None:
    future._inputs = None


# -- MPIPoolExecutor ------------------------------------------------------------------------------

_shared: dict = {}  # "pool": the Pool of ``python -m hpcmicro.futures`` (rank 0), set by __main__
_local_lock = threading.Lock()


class MPIPoolExecutor(_Executor):
    """An executor over the job's worker ranks (``python -m hpcmicro.futures script.py`` under mpiexec/srun).

    Every executor of the script shares the one pool of workers, as in
    mpi4py's shared-pool mode (nothing is spawned). In a one-rank job
    (``python script.py``) it runs its tasks on ``max_workers`` worker
    threads of this process instead (default: ``os.cpu_count()``).
    Keyword arguments of mpi4py's spawning mode (``python_exe``, ``path``,
    ``wdir``, ``env``, ...) are accepted and ignored: there is no spawn.
    """

    def __init__(self, max_workers=None, initializer=None, initargs=(), *, checkpoint=None, retries=0,
                 task_timeout=None, **kwargs):
        super().__init__(initializer, initargs, checkpoint, retries)
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
            raise ValueError(f"max_workers must be a positive int or None, got {max_workers!r}")
        self._max_workers = max_workers
        self._task_timeout = _check_timeout(task_timeout)
        self._own: Pool | None = None  # a one-rank job's private pool
        if _shared.get("pool") is not None:
            self._pool()  # a task_timeout the shared pool does not have is refused here, not at the first submit

    def _pool(self) -> Pool:
        pool = _shared.get("pool")
        if pool is not None:
            if self._task_timeout is not None and self._task_timeout != pool.rt.options.task_timeout:
                raise ValueError(f"task_timeout={self._task_timeout} cannot differ from the shared pool's "
                                 f"({pool.rt.options.task_timeout}): set it for every executor with "
                                 "`python -m hpcmicro.futures --task-timeout SECONDS script.py`")
            return pool
        with _local_lock:
            if self._own is None:
                self._own = _local_pool(self._max_workers, self._task_timeout)
            return self._own

    def _after_shutdown(self, wait: bool) -> None:
        own, self._own = self._own, None
        if own is not None:
            own.close(wait)
            if wait:
                own.rt.close()


def _check_timeout(task_timeout):
    if task_timeout is None:
        return None
    if isinstance(task_timeout, bool) or not isinstance(task_timeout, (int, float)) or not task_timeout > 0:
        raise ValueError(f"task_timeout must be a number of seconds > 0, or None, got {task_timeout!r}")
    return float(task_timeout)


def _local_pool(max_workers, task_timeout=None) -> Pool:
    from mpi4py import MPI

    import hpcmicro as hm

    if MPI.COMM_WORLD.Get_size() > 1:
        raise RuntimeError("MPIPoolExecutor in a job of several ranks needs the shared pool: run the script as "
                           "`mpiexec -n N python -m hpcmicro.futures script.py` (hpcmicro does not spawn processes)")
    workers = max_workers or os.cpu_count() or 1
    rt = hm.Runtime(comm=MPI.COMM_SELF, inprocess_workers=workers, task_timeout=task_timeout,
                    group_size=None).open()
    return Pool(rt)


# -- MPICommExecutor ------------------------------------------------------------------------------

class MPICommExecutor:
    """``with MPICommExecutor(comm, root) as executor:`` an executor on ``root``, None on the other ranks.

    Every rank of ``comm`` enters the block together; the others serve tasks
    inside ``__enter__`` until the root's block ends, and get None (so
    ``if executor is not None:`` skips the body there), as in mpi4py.
    """

    def __init__(self, comm=None, root=0, initializer=None, initargs=(), *, task_timeout=None, **kwargs):
        from mpi4py import MPI

        comm = MPI.COMM_WORLD if comm is None else comm
        if comm.Is_inter():
            raise ValueError("MPICommExecutor needs an intracommunicator")
        if not 0 <= root < comm.Get_size():
            raise ValueError(f"root must be a rank of the communicator, in [0, {comm.Get_size()}), got {root!r}")
        self._comm, self._root = comm, root
        self._initializer, self._initargs = initializer, tuple(initargs)
        self._task_timeout = _check_timeout(task_timeout)  # every rank must pass the same, as every argument
        self._executor: _CommExecutor | None = None
        self._entered = False

    def __enter__(self):
        import hpcmicro as hm

        if self._entered:
            raise RuntimeError("this MPICommExecutor's block is already running: it cannot be entered again")
        self._entered = True
        from ._pool import serve

        comm = self._comm
        # The engine's master is rank 0: reorder so that ``root`` is.
        ordered = comm.Split(0, 0 if comm.Get_rank() == self._root else comm.Get_rank() + 1)
        # One master (an open-ended call has no group masters: docs/scale.md); alone: one worker thread,
        # as mpi4py has one.
        rt = hm.Runtime(comm=ordered, inprocess_workers=1, task_timeout=self._task_timeout, group_size=None).open()
        workers = split_workers(rt.comm)
        if comm.Get_size() == 1 or comm.Get_rank() == self._root:
            self._executor = _CommExecutor(rt, ordered, workers, self._initializer, self._initargs)
            return self._executor
        try:
            outcome = serve(rt)
        finally:
            self._entered = False
            rt.close()
            release_workers(workers)
            ordered.Free()
        if outcome.error is not None:
            raise outcome.error
        return None

    def __exit__(self, *exc_info):
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        self._entered = False
        return False


class _CommExecutor(_Executor):
    def __init__(self, rt, comm, workers, initializer=None, initargs=()):
        super().__init__(initializer, initargs)
        self._rt = rt
        self._comm = comm  # the reordered communicator the Runtime was built on, freed at the end
        self._workers = workers
        self._the_pool = Pool(rt)

    def _pool(self) -> Pool:
        return self._the_pool

    def _after_shutdown(self, wait: bool) -> None:
        if self._rt is None:
            return
        self._the_pool.close(wait=True)  # the other ranks serve until this call ends: always wait
        self._rt.close()
        release_workers(self._workers)
        self._comm.Free()
        self._rt = None
