"""An open-ended call: root tasks are submitted while it runs, results handed out as they come.

This is the engine under ``hpcmicro.futures``. The master is the same
``Master`` (``open_ended=True``), on a thread of rank 0, so that the caller
goes on submitting; the workers run the same ``WorkerDriver``s as for
``rt.map``, with stealing, statistics, progress and trace. What differs:

- ``submit(payloads)`` queues a run of root tasks (thread-safe, no MPI call);
  the master's loop takes everything queued since its last look as one
  ``Submit`` event, so a loop of submits costs no round trip each.
- Results are taken from the master as reports bring them and passed to
  ``on_results(first_index, values)`` on the master's thread.
- ``on_dispatch(first_index, payloads)``, if given, sees each run of root
  tasks as it leaves the master's pool for a worker (before it is sent), and
  may replace payloads in that list: hpcmicro.futures marks those futures
  running there, and blanks the ones cancelled meanwhile.
- ``close()``: no more tasks; the call ends once those it has are done, with
  the usual end exchange (statistics, errors) and no value.

The kernel never raises for a task's own failure (hpcmicro.futures wraps
each function and returns its exception as a value), so a failed task does
not end the call; an error that does end it (a dead rank, preemption) reaches
``on_end(error)``.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from ..constants import MASTER
from ..engine.events import Close, Submit, Tag
from ..engine.master import Master
from ..engine.tasks import RootRun
from ..transport.mpi import MPITransport
from .call import CallSpec
from .inprocess import _drive_threads, _outcome
from .master import drive_master
from .spmd import _master_end, conclude, run_worker_rank

__all__ = ["OpenCall", "serve_open_call", "open_spec"]

_CLOSE = object()


def open_spec(kernel, index: int) -> CallSpec:
    return CallSpec("open", kernel, None, None, None, 0, index, "", time.perf_counter())


class OpenCall:
    """Rank 0's side of an open-ended call on ``rt``'s communicator (every other rank calls ``serve_open_call``)."""

    def __init__(self, rt, kernel, on_results, on_end, preempted=None, on_dispatch=None):
        self.rt = rt
        self.on_dispatch = on_dispatch
        self.spec = open_spec(kernel, rt._calls)
        rt._calls += 1
        self.on_results = on_results
        self.on_end = on_end
        self.preempted = preempted or _preempted_builder(rt, self.spec)
        self._inbox: deque = deque()
        self._lock = threading.Lock()
        self._next = 0  # the index the next submitted task gets
        self._closed = False
        self.master: Master | None = None
        self.outcome = None
        comm = rt.comm
        if comm.size > 1:
            self._transport = MPITransport(comm)
            self._watch_dispatch(self._transport)
            self._wakeup = self._transport.wakeup
        else:
            self._wakeup = threading.Event()  # replaced by the in-process world's once it exists
        self._thread = threading.Thread(target=self._run, name="hpcmicro-futures-master", daemon=True)
        self._thread.start()

    # -- the caller's side (any thread) ------------------------------------------------------
    def submit(self, payloads: list) -> int:
        """Queue ``payloads`` as root tasks; returns the index of the first (the others follow)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a closed call")
            first = self._next
            self._next += len(payloads)
            self._inbox.append(RootRun(first, first + len(payloads), 0, payloads, first))
        wakeup = self._wakeup
        if not wakeup.is_set():  # a loop of submits wakes the master once, not once each
            wakeup.set()
        return first

    def submit_one(self, payload, register) -> None:
        """Queue one root task; ``register(index)`` runs first, under the lock (no result can precede it)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a closed call")
            index = self._next
            self._next = index + 1
            register(index)
            self._inbox.append((index, payload))
        wakeup = self._wakeup
        if not wakeup.is_set():
            wakeup.set()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._inbox.append(_CLOSE)
        self._wakeup.set()

    def join(self, timeout=None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the master's thread ---------------------------------------------------------------
    def _watch_dispatch(self, transport) -> None:
        """Show ``on_dispatch`` every run of root tasks the master sends a worker, before it goes."""
        if self.on_dispatch is None:
            return
        send, on_dispatch = transport.send, self.on_dispatch

        def sending(dest, tag, body):
            if tag == Tag.TASKS and body[0] is not None:  # from the master's pool (not a steal answer)
                for entry in body[1]:
                    if type(entry) is RootRun and entry.payloads is not None:
                        on_dispatch(entry.start, entry.payloads)
            send(dest, tag, body)

        transport.send = sending

    def _feed(self, now: float) -> list:
        """What was submitted since the last look: contiguous submits joined in one run, one Submit."""
        inbox = self._inbox
        if not inbox:
            return []
        events: list = []
        runs: list = []
        first, payloads = 0, []  # type: int, list  # the run being joined

        def flush():
            if payloads:
                runs.append(RootRun(first, first + len(payloads), 0, payloads, first))

        while inbox:
            item = inbox.popleft()
            if item is _CLOSE:
                flush()
                payloads = []
                if runs:
                    events.append(Submit(runs, now))
                    runs = []
                events.append(Close(now))
            elif type(item) is tuple:  # one task (submit_one)
                if payloads and first + len(payloads) == item[0]:
                    payloads.append(item[1])
                else:
                    flush()
                    first, payloads = item[0], [item[1]]
            elif payloads and first + len(payloads) == item.start:
                payloads.extend(item.payloads)
            else:
                flush()
                first, payloads = item.start, list(item.payloads)
        flush()
        if runs:
            events.append(Submit(runs, now))
        return events

    def _take_results(self) -> None:
        master = self.master
        assert master is not None
        segments = master.segments
        if segments:
            master.segments = []
            for first, values in segments:
                self.on_results(first[0], values)

    def _run(self) -> None:
        rt, spec = self.rt, self.spec
        comm, options = rt.comm, rt.options
        error = None
        try:
            if comm.size > 1:
                workers = list(range(1, comm.size))
                master = self.master = Master([], options.policy, workers, rt.capacities[1:], "map",
                                              open_ended=True, preempt_grace_s=options.preempt_grace)
                drive_master(master, self._transport, feed=self._feed, after=self._take_results,
                             signal=_signal())
                self._take_results()
                self.outcome = conclude(comm, _master_end(comm, spec, options, master, self.preempted), MASTER)
            else:
                self.outcome = self._run_inprocess()
            error = self.outcome.error
        except BaseException as exc:  # noqa: BLE001  (handed to on_end: the caller's futures must learn of it)
            error = exc
        finally:
            self.on_end(error)

    def _run_inprocess(self):
        """One rank: the master here, ``inprocess_workers`` worker threads (at least one)."""
        from ..mpi.devices import CPU
        from ..transport.inproc import InprocWorld
        from .call import make_executor

        rt, spec, options = self.rt, self.spec, self.rt.options
        n = max(1, options.inprocess_workers)
        world = InprocWorld(n + 1)
        self._watch_dispatch(world[0])
        self._wakeup = world[0].wakeup
        self._wakeup.set()  # whatever was submitted before the swap
        ranks = list(range(1, n + 1))
        master = self.master = Master([], options.policy, ranks, [1.0] * n, "map", open_ended=True,
                                      preempt_grace_s=options.preempt_grace)
        backend = rt.backend or CPU
        executors = [make_executor(spec, options, r, 1, backend, process_rank=0) for r in ranks]
        _drive_threads(master, world, executors, options, backend, kind="open", feed=self._feed,
                       after=self._take_results, signal=_signal())
        self._take_results()
        return _outcome(spec, options, master, executors, self.preempted)


def serve_open_call(rt, kernel, preempted=None):
    """A worker rank's side of rank 0's ``OpenCall``: run tasks until it closes; returns the Outcome."""
    spec = open_spec(kernel, rt._calls)
    rt._calls += 1
    outcome = run_worker_rank(rt.comm, spec, rt.options, rt.backend, signal=_signal(),
                              preempted=preempted or _preempted_builder(rt, spec))
    return conclude(rt.comm, outcome, MASTER)


def _preempted_builder(rt, spec):
    """The Preempted exception (exit status 75) a SIGTERM/SIGUSR1 ends the call with, as ``rt.map`` raises."""
    return lambda signum: rt._preempted(signum, spec.index)


def _signal():
    from ..mpi import signals

    return signals.requested
