"""Large results stay on the worker that made them; dependents and rank 0 fetch them from there.

A task's result whose pickle (protocol 5, buffers counted) is at least
``KEEP_BYTES`` is kept on its worker, and only a ``RemoteValue`` (owner
rank, key, size) travels back through the engine. Then:

- a dependent task gets the reference in place of the value, and its worker
  fetches the value straight from the owner (a copy from memory when it is
  the owner itself): arrays move as raw MPI buffers (``mpi4py.util.pkl5``),
  never as one pickle relayed through rank 0;
- rank 0 fetches it the first time ``future.result()`` is asked for;
- the owner drops it once rank 0's future is gone (garbage collected: a
  dependent holds its inputs' futures until it is done), told in batches.

Every process of a pool has one ``ValueService`` on a duplicate of the
pool's communicator; on a worker a thread of it answers fetches, polling with
back-off, so that it answers while the worker's kernel runs. With a
checkpoint every result goes to rank 0 as before (it is stored there).

Requests go to tag ``REQUEST``; each fetch waits on a tag of its own, so
threads of one process fetching at once cannot take each other's answers.
"""

from __future__ import annotations

import itertools
import os
import pickle
import threading
import time
from collections import deque

from ..transport.base import Backoff

__all__ = ["KEEP_BYTES", "RemoteValue", "ValueService", "ValueLost", "current", "keep_or_pickle", "resolve"]

KEEP_BYTES = int(os.environ.get("HPCMICRO_FUTURES_KEEP_BYTES", str(256 * 1024)))  # crossover: docs/benchmarks.md
REQUEST = 1
_REPLY_TAGS = range(2, 32000)  # MPI guarantees tags up to 32767
STOP_WAIT_S = 30.0  # how long a worker waits for rank 0's "stop" after a clean end of the call


class ValueLost(RuntimeError):
    """A result kept on a worker cannot be fetched (the owner dropped it, or the pool ended)."""


class RemoteValue:
    """A task's result kept on rank ``owner`` of the pool, under ``key``; ``nbytes``: its pickled size."""

    __slots__ = ("owner", "key", "nbytes")

    def __init__(self, owner: int, key: int, nbytes: int):
        self.owner, self.key, self.nbytes = owner, key, nbytes

    def __reduce__(self):
        return RemoteValue, (self.owner, self.key, self.nbytes)

    def __repr__(self):
        return f"RemoteValue(owner={self.owner}, key={self.key}, nbytes={self.nbytes})"


_current: list = []  # the ValueService of the pool this process serves (a stack: pools may nest)


def current():
    return _current[-1] if _current else None


def _pickled_size(value) -> tuple[int, bytes, list]:
    buffers: list = []
    head = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    return len(head) + sum(b.raw().nbytes for b in buffers), head, buffers


def keep_or_pickle(value, keep_bytes):
    """``(True, RemoteValue)`` if ``value`` stays here, else ``(False, its pickle)`` (raises what pickling raises)."""
    service = current()
    if keep_bytes is None or service is None:
        return False, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    size, head, buffers = _pickled_size(value)
    if size >= keep_bytes:
        return True, service.keep(value, size)
    return False, (head if not buffers else pickle.dumps(value, protocol=5))


def _copy(value):
    """A private copy (one memory copy of each buffer), as a fetch from another rank would give."""
    buffers: list = []
    head = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    return pickle.loads(head, buffers=[bytearray(b.raw()) for b in buffers])


def resolve(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The call's arguments with each RemoteValue in them (top level, or an item of a list, tuple or dict
    argument) fetched: all requests go out first, so that the owners answer at once."""
    refs: dict = {}
    for value in (*args, *kwargs.values()):
        for item in _items(value):
            if type(item) is RemoteValue:
                refs[(item.owner, item.key)] = item
    service = current()
    if service is None:
        raise ValueLost(f"{len(refs)} kept input(s) cannot be fetched outside their pool")
    got = service.fetch_many(list(refs.values()))
    by_key = {(ref.owner, ref.key): value for ref, value in zip(refs.values(), got)}

    def sub(v):
        return by_key[(v.owner, v.key)] if type(v) is RemoteValue else v

    def arg(value):
        if type(value) is RemoteValue:
            return sub(value)
        if isinstance(value, list):
            return [sub(v) for v in value]
        if isinstance(value, tuple):
            items = [sub(v) for v in value]
            return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        return value

    return tuple(arg(a) for a in args), {k: arg(v) for k, v in kwargs.items()}


def _items(value):
    if type(value) is RemoteValue:
        return (value,)
    if isinstance(value, (list, tuple)):
        return value
    if isinstance(value, dict):
        return value.values()
    return ()


class ValueService:
    """One process's side: the values it keeps (a worker), fetching from others, and frees (rank 0)."""

    def __init__(self, comm):
        from mpi4py import MPI
        from mpi4py.util import pkl5

        self._MPI = MPI
        self.comm = pkl5.Intracomm(comm)  # a Dup of the pool's communicator, owned (freed) here
        self.rank = comm.Get_rank()
        self.held: dict = {}
        self._keys = itertools.count()
        self._tags = itertools.cycle(_REPLY_TAGS)
        self._tag_lock = threading.Lock()
        self._frees: deque = deque()  # (owner, key) of futures gone on rank 0, sent in batches
        self.broken: BaseException | None = None  # the error that ended the pool (fetches fail with it)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = {"kept": 0, "kept_bytes": 0, "local": 0, "served_to_workers": 0, "served_to_root": 0,
                      "served_bytes": 0, "fetched": 0, "fetched_bytes": 0, "freed": 0}

    # -- a worker: keeping and serving -------------------------------------------------------
    def keep(self, value, nbytes: int) -> RemoteValue:
        key = next(self._keys)
        self.held[key] = (value, nbytes)
        self.stats["kept"] += 1
        self.stats["kept_bytes"] += nbytes
        return RemoteValue(self.rank, key, nbytes)

    def start_serving(self) -> None:
        _current.append(self)
        self._thread = threading.Thread(target=self._serve, name="hpcmicro-values", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        comm, status = self.comm, self._MPI.Status()
        backoff = Backoff(tmax=250e-6, spin_s=2e-4)  # as the engine's mailbox: an answer within ~0.25 ms
        while not self._stop.is_set():
            msg = comm.improbe(source=self._MPI.ANY_SOURCE, tag=REQUEST, status=status)
            if msg is None:
                t = backoff.advance()
                self._stop.wait(t) if t else os.sched_yield()
                continue
            backoff.reset()
            source, request = status.Get_source(), msg.recv()
            if request[0] == "get":
                self._answer(source, request[1], request[2])
            elif request[0] == "free":
                for key in request[1]:
                    if self.held.pop(key, None) is not None:
                        self.stats["freed"] += 1
            elif request[0] == "stop":
                comm.send(dict(self.stats, held=len(self.held)), dest=source, tag=request[1])
                return

    def _answer(self, source: int, key: int, tag: int) -> None:
        entry = self.held.get(key)
        if entry is None:
            self.comm.send((False, f"rank {self.rank} no longer holds value {key}"), dest=source, tag=tag)
            return
        self.stats["served_to_root" if source == 0 else "served_to_workers"] += 1
        self.stats["served_bytes"] += entry[1]
        self.comm.send((True, entry[0]), dest=source, tag=tag)  # buffers go as raw messages (pkl5)

    def finish(self, clean: bool) -> dict:
        """A worker at the end of the pool: wait for rank 0's stop (after a clean end), then let go."""
        if self._thread is not None:
            self._thread.join(STOP_WAIT_S if clean else 0.0)
            self._stop.set()
            self._thread.join(1.0)  # a thread stuck sending to a requester that gave up is a daemon: left
        if _current and _current[-1] is self:
            _current.pop()
        self.held.clear()
        self.comm.Free()
        return self.stats

    # -- any rank: fetching ------------------------------------------------------------------
    def fetch(self, ref: RemoteValue):
        return self.fetch_many([ref])[0]

    def fetch_many(self, refs: list) -> list:
        """The values of ``refs``: requests to every owner first, then the answers as they come."""
        got: list = [None] * len(refs)
        waiting: dict = {}  # position -> (owner, reply tag)
        comm = self.comm
        self.flush_frees()
        for i, ref in enumerate(refs):
            if ref.owner == self.rank:
                entry = self.held.get(ref.key)
                if entry is None:
                    raise ValueLost(f"rank {self.rank} no longer holds value {ref.key}")
                self.stats["local"] += 1
                got[i] = _copy(entry[0])
                continue
            with self._tag_lock:
                tag = next(self._tags)
            comm.send(("get", ref.key, tag), dest=ref.owner, tag=REQUEST)
            waiting[i] = (ref.owner, tag)
        backoff = Backoff()
        lost = None
        while waiting:
            for i, (owner, tag) in list(waiting.items()):
                msg = comm.improbe(source=owner, tag=tag)
                if msg is None:
                    continue
                ok, value = msg.recv()
                del waiting[i]
                backoff.reset()
                if not ok:  # the others are still received: an owner must not be left sending to nobody
                    lost = lost or value
                    continue
                got[i] = value
                self.stats["fetched"] += 1
                self.stats["fetched_bytes"] += refs[i].nbytes
            if not waiting:
                break
            if self.broken is not None or self._stop.is_set():
                owners = sorted({owner for owner, _ in waiting.values()})
                raise ValueLost(f"results kept on rank(s) {owners} cannot be fetched: the pool ended "
                                f"({self.broken or 'stopped'})") from self.broken
            t = backoff.advance()
            time.sleep(t) if t else os.sched_yield()
        if lost is not None:
            raise ValueLost(lost)
        return got

    # -- rank 0: freeing and stopping ----------------------------------------------------------
    def free(self, owner: int, key: int) -> None:
        """Rank 0's future of a kept value is gone (any thread, a finalizer: no MPI here)."""
        self._frees.append((owner, key))

    def flush_frees(self) -> None:
        frees = self._frees
        if not frees or self.rank != 0:
            return
        by_owner: dict = {}
        while frees:
            owner, key = frees.popleft()
            by_owner.setdefault(owner, []).append(key)
        for owner, keys in by_owner.items():
            self.comm.send(("free", keys), dest=owner, tag=REQUEST)

    def stop_workers(self, clean: bool) -> list:
        """Rank 0 at the end of the pool: the workers' serving threads stop; their statistics (clean end)."""
        reports: list = []
        if clean:
            self.flush_frees()
            waiting = {}
            for worker in range(1, self.comm.Get_size()):
                with self._tag_lock:
                    waiting[worker] = next(self._tags)
                self.comm.send(("stop", waiting[worker]), dest=worker, tag=REQUEST)
            deadline, backoff = time.monotonic() + STOP_WAIT_S, Backoff(tmax=1e-3)
            while waiting and time.monotonic() < deadline:  # bounded: a worker that already left never answers
                for worker, tag in list(waiting.items()):
                    msg = self.comm.improbe(source=worker, tag=tag)
                    if msg is not None:
                        reports.append(msg.recv())
                        del waiting[worker]
                        backoff.reset()
                t = backoff.advance()
                time.sleep(t) if t else os.sched_yield()
        self._stop.set()
        self.comm.Free()
        return reports
