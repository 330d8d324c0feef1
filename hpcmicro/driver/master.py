"""The master's loop: messages and time in, the master's instructions out."""

from __future__ import annotations

import time

from ..engine.events import CheckpointDue, CutReady, Preempt, Start, Tick, WorkerReport

__all__ = ["drive_master", "MasterTimers"]

PROGRESS_EVERY_S = 0.1


class MasterTimers:
    """What the master's driver does by the clock, each time round its loop: take a preemption
    request (once, and only while the call is on: a request taken must be acted on), say when a
    checkpoint is due, update the progress display. Returns the master's instructions."""

    def __init__(self, master, checkpoint_every=None, progress=None, signal=lambda: 0):
        self.master = master
        self.checkpoint_every = checkpoint_every
        self.next_checkpoint = checkpoint_every
        self.progress = progress
        self.next_progress = 0.0
        self.signal = signal
        self.signalled = False

    def __call__(self, now: float) -> list:
        master, out = self.master, []
        if not self.signalled and not master.done:
            signum = self.signal()
            if signum:
                self.signalled = True
                out += master.handle(Preempt(signum, now))
        if self.next_checkpoint is not None and now >= self.next_checkpoint:
            self.next_checkpoint = now + self.checkpoint_every
            out += master.handle(CheckpointDue(now))
        if self.progress is not None and now >= self.next_progress:
            self.next_progress = now + PROGRESS_EVERY_S
            self.progress.update(master.finished, master.created)
        return out

    def finish(self) -> None:
        if self.progress is not None:
            stop = getattr(self.master, "stop", None)
            kind = getattr(stop, "kind", "ok")
            ended = {"error": "failed", "preempted": "preempted"}.get(kind, "ok")
            self.progress.finish(self.master.finished, self.master.created, ended=ended)


def drive_master(master, transport, *, checkpoint_every: float | None = None, on_cut=None, progress=None,
                 signal=lambda: 0, clock=time.monotonic, feed=None, after=None) -> None:
    """Run ``master`` until the call ends.

    Every ``checkpoint_every`` seconds it asks for a snapshot round; each cut
    goes to ``on_cut(CutReady)``, which must not block for long unless its
    reason is "preempt" (the final cut). ``signal()`` returns a pending
    preemption signal or 0. ``progress`` (a Progress) is updated as tasks finish.

    An open-ended call (hpcmicro.futures) also gives ``feed(now)``, the events
    from outside (Submit, Close) to handle each time round the loop, and
    ``after()``, called after each report, to take the results that came; a
    feeder sets ``transport.wakeup`` so that the loop does not sleep on news.
    """
    start = clock()
    send = transport.send

    def execute(instructions) -> None:
        for ins in instructions:
            if type(ins) is CutReady:
                if on_cut is not None:
                    on_cut(ins)
            else:
                send(ins.dest, ins.tag, ins.body)

    timers = MasterTimers(master, checkpoint_every, progress, signal)
    execute(master.handle(Start(0.0)))
    while not master.done:
        now = clock() - start
        execute(timers(now))
        if feed is not None:
            for event in feed(now):
                execute(master.handle(event))
        envelope = transport.poll()
        if envelope is None:
            execute(master.handle(Tick(now)))
            if not master.done:
                transport.wait()
            continue
        source, tag, body, nbytes = envelope
        execute(master.handle(WorkerReport(source, body, now, nbytes)))
        if after is not None:
            after()
    transport.flush()
    timers.finish()
