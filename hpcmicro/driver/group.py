"""A group master rank's loop: messages and time in, the group master's instructions out.

Like ``drive_master``, but the group ends when STOP has come from the top and
been passed to its members; the call's end (pieces, header) is the spmd driver's.
"""

from __future__ import annotations

import time

from ..engine.events import Start, Tick
from ..engine.group import GroupMessage

__all__ = ["drive_group"]


def drive_group(group, transport, *, clock=time.monotonic) -> None:
    start = clock()
    send = transport.send

    def execute(instructions) -> None:
        for ins in instructions:
            send(ins.dest, ins.tag, ins.body)

    execute(group.handle(Start(0.0)))
    while not group.stopped:
        envelope = transport.poll()
        now = clock() - start
        if envelope is None:
            execute(group.handle(Tick(now)))
            if not group.stopped:
                transport.wait()
            continue
        source, tag, body, nbytes = envelope
        execute(group.handle(GroupMessage(source, tag, body, now, nbytes)))
    transport.flush()
