"""One worker in the calling thread: the master and the worker take turns, with no threads.

With a single worker there is nobody to balance with, so the mailbox thread
buys nothing and its hand-offs (each one a thread switch and a GIL hand-over)
would dominate small calls. Instead this loop delivers every message in flight
to its machine, then lets the kernel run a slice of tasks, and repeats: the
same master and worker protocols, the same messages over the in-process
transport, in a deterministic order.

What a single thread cannot do: notice a task that overruns ``task_timeout``
while it runs. With one worker nobody could take that task over anyway (the
master waits for the slow one), so only the statistic is missing. Signals,
checkpoints and the preemption drain are looked at between slices.
"""

from __future__ import annotations

import time

from ..engine.events import CutReady, Start, TaskRan, Tick, WorkerReport, worker_event
from ..engine.worker import EXIT, RUN
from .master import MasterTimers

__all__ = ["drive_cooperatively"]

SLICE_S = 0.01  # the kernel runs this long between looks at messages, signals and the clock
IDLE_SLEEP_S = 0.001  # nothing to run and nothing in flight: only a deadline (the drain's grace) can move things


def drive_cooperatively(master, worker_transport, master_transport, protocol, *, checkpoint_every=None,
                        on_cut=None, progress=None, signal=lambda: 0, signal_pending=lambda: False,
                        clock=time.monotonic) -> None:
    """``signal()`` takes a pending preemption request (then it must be acted on); ``signal_pending()``
    only peeks, between tasks, to end a slice early."""
    ex = protocol.ex
    start = clock()
    perf = time.perf_counter
    t_start = perf()

    def from_master(instructions) -> None:
        for ins in instructions:
            if type(ins) is CutReady:
                if on_cut is not None:
                    on_cut(ins)
            else:
                master_transport.send(ins.dest, ins.tag, ins.body)

    def from_worker(instructions) -> None:
        for ins in instructions:
            worker_transport.send(ins.dest, ins.tag, ins.body)

    def pump(now) -> bool:
        """Deliver everything in flight; whether anything was."""
        moved = False
        while True:
            envelope = master_transport.poll()
            if envelope is not None:
                from_master(master.handle(WorkerReport(envelope.source, envelope.body, now)))
                moved = True
                continue
            envelope = worker_transport.poll()
            if envelope is not None:
                from_worker(protocol.handle(worker_event(envelope.source, envelope.tag, envelope.body)))
                moved = True
                continue
            return moved

    timers = MasterTimers(master, checkpoint_every, progress, signal)
    from_master(master.handle(Start(0.0)))
    while True:
        now = clock() - start
        pump(now)
        from_master(timers(now))
        if pump(now):
            continue
        step, out = protocol.next_step(perf())
        from_worker(out)
        if step is EXIT:
            break
        if step is RUN:
            # A lone worker's pool is empty after the seed (nothing to ask for), and no message can
            # arrive mid-slice: the protocol hears once per slice how it went.
            ok = ex.run_slice(perf() + SLICE_S, signal_pending)
            from_worker(protocol.handle(TaskRan(ok, perf())))
            continue
        if not out:  # waiting, and it said nothing new: time must pass on the master
            from_master(master.handle(Tick(clock() - start)))
            if not pump(now) and not master.done:
                time.sleep(IDLE_SLEEP_S)
    ex.stats.wall_s = perf() - t_start
    timers.finish()
