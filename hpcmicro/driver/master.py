"""The master's loop: messages and time in, the master's instructions out."""

from __future__ import annotations

import time

from ..engine.events import CheckpointDue, CutReady, Preempt, Start, Tick, WorkerReport

__all__ = ["drive_master"]

PROGRESS_EVERY_S = 0.1


def drive_master(master, transport, *, checkpoint_every: float | None = None, on_cut=None, progress=None,
                 signal=lambda: 0, clock=time.monotonic) -> None:
    """Run ``master`` until the call ends.

    Every ``checkpoint_every`` seconds it asks for a snapshot round; each cut
    goes to ``on_cut(CutReady)``, which must not block for long unless its
    reason is "preempt" (the final cut). ``signal()`` returns a pending
    preemption signal or 0. ``progress`` (a Progress) is updated as tasks finish.
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

    execute(master.handle(Start(0.0)))
    next_checkpoint = checkpoint_every
    next_progress = 0.0
    signalled = False
    while not master.done:
        now = clock() - start
        if not signalled:  # (the loop runs only while the call is on: a request taken is acted on)
            signum = signal()
            if signum:
                signalled = True
                execute(master.handle(Preempt(signum, now)))
        if next_checkpoint is not None and now >= next_checkpoint:
            next_checkpoint = now + checkpoint_every
            execute(master.handle(CheckpointDue(now)))
        if progress is not None and now >= next_progress:
            next_progress = now + PROGRESS_EVERY_S
            progress.update(master.finished, master.created)
        envelope = transport.poll()
        if envelope is None:
            execute(master.handle(Tick(now)))
            if not master.done:
                transport.wait()
            continue
        source, tag, body, nbytes = envelope
        execute(master.handle(WorkerReport(source, body, now, nbytes)))
    transport.flush()
    if progress is not None:
        progress.finish(master.finished, master.created)
