"""A worker's two threads around its ``WorkerProtocol``.

The kernel thread runs tasks; a mailbox thread does all of the transport's
traffic: it sends what the protocol says to send and answers steals, new
tasks, snapshots, DRAIN, RETIRE, ABORT and STOP at once, even while a long
kernel runs (a steal that waited for the victim's current task would leave the
thief idle for that task's whole duration). Pure-Python kernels hold the GIL,
but Python hands it over every few milliseconds, so messages are answered
within that. ``cond`` guards the protocol, the queue and the results.

The mailbox thread also runs the end of the call (``finish``: the final
collectives), so that a worker whose kernel hangs past ``task_timeout`` does
not hold up the others; its kernel thread rejoins when the kernel returns.
Only the mailbox thread uses the transport while the call runs, so MPI needs
no more than MPI_THREAD_SERIALIZED.
"""

from __future__ import annotations

import pickle
import socket
import threading
import time
from collections import deque

from ..engine.events import ResultUnsendable, Signalled, TaskRan, Tick, worker_event
from ..engine.worker import EXIT, WAIT
from .parked import run_in_thread

__all__ = ["WorkerDriver"]

_now = time.perf_counter

WATCH_EVERY_S = 0.01  # how often the mailbox looks for a task that overran task_timeout
IDLE_WAIT_S = 0.05  # the longest the kernel thread waits on the condition before looking again
SLICE_S = 0.002  # the longest the kernel thread runs tasks without telling its protocol


class WorkerDriver:
    def __init__(self, transport, protocol, signal=lambda: 0, device=None):
        self.transport = transport
        self.proto = protocol
        self.ex = protocol.ex
        self.signal = signal
        self.device = device  # a CUDA device id to make current in the kernel thread
        self.cond = threading.Condition(threading.Lock())  # a plain lock: cheaper than the default RLock
        self.ex.lock = self.cond
        self.outbox: deque = deque()
        self.mailbox_error: BaseException | None = None
        self.mailbox_done = False
        self.outcome = None
        self._finish = None
        self.t_start = 0.0

    # -- the kernel thread -----------------------------------------------------------
    def run(self, finish):
        """Run the call; ``finish(stop)`` runs on the mailbox thread after STOP. Returns its value."""
        self.t_start = _now()
        self._finish = finish
        mailbox = run_in_thread(self._mailbox)  # a parked thread: no thread start per call
        self.work()
        mailbox.join()
        if self.mailbox_error is not None:
            raise self.mailbox_error  # as it is: the runtime recognizes a dead peer (ULFM) by it
        return self.outcome

    def work(self) -> None:
        """The kernel thread's loop, until the call is over."""
        if self.device is not None:
            _use_device(self.device)
        ex, proto, cond = self.ex, self.proto, self.cond
        run_slice = ex.run_slice
        while True:
            with cond:
                if self.mailbox_done:
                    return
                step, out = proto.next_step(_now())
                self._post(out)
                if step is EXIT:
                    return
                if step is WAIT:
                    t0 = _now()
                    cond.wait(IDLE_WAIT_S)
                    ex.stats.idle_s += _now() - t0
                    continue
            while True:  # run until the protocol wants the outer loop
                # Tasks back to back for a slice (steals and snapshots are served meanwhile, under the
                # lock): the protocol hears once per slice, not once per task.
                ok = run_slice(_now() + SLICE_S)
                with cond:
                    self._post(proto.handle(TaskRan(ok, _now())))
                    if not proto.can_run:
                        break

    def _post(self, instructions) -> None:
        """Queue instructions for the mailbox thread (caller holds cond)."""
        if instructions:
            self.outbox.extend(instructions)
            self.transport.wakeup.set()

    # -- the mailbox thread ----------------------------------------------------------
    def _mailbox(self) -> None:
        transport, proto, cond, stats = self.transport, self.proto, self.cond, self.ex.stats
        next_watch = 0.0
        try:
            while True:
                self._flush()
                t0 = _now()
                envelope = transport.poll()
                stats.comm_s += _now() - t0
                if envelope is not None:
                    source, tag, body, nbytes = envelope
                    stats.bytes_in += nbytes
                    stats.bytes_from[source] = stats.bytes_from.get(source, 0) + nbytes
                    event = worker_event(source, tag, body)
                    with cond:
                        self._post(proto.handle(event))
                        cond.notify()
                    if proto.stopped:
                        break
                    continue
                now = _now()
                if not proto.signal_sent and self.signal():
                    with cond:
                        self._post(proto.handle(Signalled(self.signal())))
                if proto.task_timeout and now >= next_watch:
                    next_watch = now + WATCH_EVERY_S
                    with cond:
                        self._post(proto.handle(Tick(now)))
                if not self.outbox:
                    transport.wait()
            self._flush()
            transport.flush()
            stats.wall_s = _now() - self.t_start  # before finish sends the statistics
            self.outcome = self._finish(proto.stop)
        except BaseException as exc:  # surface it in the kernel thread instead of hanging
            self.mailbox_error = exc
        finally:
            with cond:
                self.mailbox_done = True
                cond.notify()

    def _flush(self) -> None:
        outbox, send, stats = self.outbox, self.transport.send, self.ex.stats
        while outbox:
            ins = outbox.popleft()
            try:
                send(ins.dest, ins.tag, ins.body)
            except Exception as exc:  # a result that cannot be pickled: that task's TaskError, not a dead mailbox
                failed = unsendable_result(ins, exc, self.ex.ctx.rank)
                if failed is None:
                    raise
                with self.cond:
                    self._post(self.proto.handle(ResultUnsendable(failed)))
                continue
            stats.messages_sent += 1

    def cancel(self) -> None:
        """End the kernel thread's loop from outside (the call was abandoned)."""
        with self.cond:
            self.mailbox_done = True
            self.cond.notify()


def unsendable_result(ins, exc, rank) -> dict | None:
    """If ``ins`` is a report whose results cannot be pickled, a TaskError's fields naming the first such task."""
    results = getattr(getattr(ins, "report", None), "results", None)
    if results is None:
        return None
    # Runs of tasks consecutive in pre-order, named by the first one's id. Without spawned
    # tasks a run is root tasks only, so every id is known; otherwise name the offset.
    roots_only = getattr(ins.report, "spawned", 1) == 0
    for first, values in results:
        for k, value in enumerate(values):
            try:
                pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as err:  # noqa: BLE001  (any pickling failure)
                task_id = (first[0] + k,) if roots_only and len(first) == 1 else tuple(first)
                which = (f"task {task_id}" if k == 0 or roots_only
                         else f"the task {k} places after {task_id} in pre-order")
                return {"task_id": task_id,
                        "payload_repr": f"(its result, a {type(value).__name__})",
                        "rank": rank, "host": socket.gethostname(),
                        "remote_traceback": f"the result of {which} cannot be pickled to send to the "
                                            f"master: {type(err).__name__}: {err}",
                        "exc_type": type(err).__name__}
    return None


def _use_device(device: int) -> None:
    """CUDA's current device is per thread: make the rank's device current in its kernel thread."""
    try:
        import cupy

        cupy.cuda.Device(device).use()
    except Exception:  # noqa: BLE001  (no CuPy: nothing was bound)
        pass
