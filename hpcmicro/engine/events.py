"""The engine's vocabulary: wire tags, report shapes, events in, instructions out.

The protocol machines (``Master``, ``WorkerProtocol``) take typed *events* and
return typed *instructions*; a driver turns messages from a transport into
events and instructions into messages. Time is always passed in (``now``, in
seconds on the driver's clock), never read. Events and instructions are
NamedTuples: immutable like frozen dataclasses, but defining one costs a
tenth as much, and every rank defines them all at start-up. A driver
dispatches on ``type(event)``, never on equality (two events without fields
are equal tuples) or truth.

Messages on the wire (``tag``: body):

master -> worker    TASKS     (seq, entries)  entries: RootRun/Spawned; seq counts master sends
worker -> worker    TASKS     (None, entries) a steal answer (may be empty)
master -> victim    STEAL     thief_rank
master -> worker    ABORT     None            drop the queue, stop running tasks
master -> worker    DRAIN     None            start no new task (preemption)
master -> worker    SNAPSHOT  None            report pending tasks and finished results now
master -> worker    RETIRE    None            your running task overran: hand back everything else
master -> worker    STOP      Stop            leave the loop (the call ends)
worker -> master    REPORT    Report          counts, results, acks, requests, snapshots, hand-backs

Ownership: a body, once sent, belongs to its receiver; the sender never touches it
again (the in-process transport passes objects without copying them).
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = [
    "Tag", "State", "Report", "Stop",
    # master events
    "Start", "WorkerReport", "Tick", "CheckpointDue", "Preempt", "Submit", "Close", "Abort",
    # worker events
    "TasksArrived", "StealAsked", "SnapshotAsked", "DrainAsked", "AbortAsked", "RetireAsked", "StopAsked",
    "TaskRan", "Signalled", "ResultUnsendable",
    # instructions
    "Send", "SendTasks", "SendSteal", "SendAbort", "SendDrain", "SendSnapshot", "SendRetire", "SendStop",
    "SendReport", "CutReady",
    "worker_event",
]


class Tag:
    TASKS = 11
    STEAL = 12
    ABORT = 13
    STOP = 14
    REPORT = 15
    DRAIN = 16
    SNAPSHOT = 17
    RETIRE = 18


class State:
    """What a worker tells the master about itself in a report."""

    BUSY = 0  # a periodic status: no request
    LOW = 1  # queue below its low-water mark: send more if you have it
    IDLE = 2  # queue empty: send work or broker a steal
    DRAINED = 3  # draining for preemption: no task running, none will start
    RETIRED = 4  # told to retire (its task overran task_timeout): everything else handed back

    WANTING = (LOW, IDLE)  # states that ask the master for work


class Report(NamedTuple):
    state: int
    seq_seen: int  # TASKS messages received from the master so far
    done: int  # tasks finished since the last report
    spawned: int  # tasks created by those tasks
    queued: int  # tasks waiting in the local queue now
    mean_task_s: float  # mean kernel time so far (0.0: none measured yet)
    results: list | None  # map mode: runs of results, [(first task id, [values in pre-order]), ...]
    acks: tuple  # ranks whose steal answers arrived since the last report
    aborted: bool  # this worker has processed ABORT
    error: dict | None  # a kernel raised: what, where
    failed: tuple = ()  # (task_id, traceback) of tasks skipped after their last retry
    snapshot: dict | None = None  # the answer to SNAPSHOT: {"pending": entries, "tree": (lengths, blocks)}
    handback: tuple | None = None  # the answer to RETIRE: (entries, tree part) for others to run
    signal: int = 0  # a preemption signal this rank received
    hung: bool = False  # the running task has overrun task_timeout (and is still running)


class Stop(NamedTuple):
    """How a call ended: kind is "ok", "error" (info: the error dict) or "preempted" (info: signal)."""

    kind: str
    info: Any


# -- master events --------------------------------------------------------------------

class Start(NamedTuple):
    """The call begins: seed the workers."""

    now: float


class Submit(NamedTuple):
    """More root tasks for an open-ended call (``Master(open_ended=True)``): runs that follow the last ones."""

    runs: list
    now: float


class Close(NamedTuple):
    """An open-ended call takes no more tasks: it ends once those it has are done."""

    now: float


class Abort(NamedTuple):
    """The call fails from outside (a group master told by the top master): abort every worker."""

    error: dict
    now: float


class WorkerReport(NamedTuple):
    source: int
    report: Report
    now: float
    nbytes: int = 0  # its size on the wire (0 in-process)


class Tick(NamedTuple):
    """Nothing arrived; time passed (deadlines, samples)."""

    now: float


class CheckpointDue(NamedTuple):
    now: float


class Preempt(NamedTuple):
    """A rank got SIGTERM/SIGUSR1: drain, snapshot, stop."""

    signum: int
    now: float


# -- worker events --------------------------------------------------------------------

class TasksArrived(NamedTuple):
    source: int
    seq: int | None  # None: a steal answer from a peer
    entries: list


class StealAsked(NamedTuple):
    thief: int


class SnapshotAsked(NamedTuple):
    pass


class DrainAsked(NamedTuple):
    pass


class AbortAsked(NamedTuple):
    pass


class RetireAsked(NamedTuple):
    pass


class StopAsked(NamedTuple):
    stop: Stop


class TaskRan(NamedTuple):
    """The kernel thread ran the front task (or a block or batch of them)."""

    ok: bool  # False: a task failed for good under on_error="raise"
    now: float


class ResultUnsendable(NamedTuple):
    """A report could not be sent: a result in it cannot be pickled (``error``: the TaskError's fields)."""

    error: dict


class Signalled(NamedTuple):
    """This rank received a preemption signal."""

    signum: int


def worker_event(source: int, tag: int, body):
    """A message to a worker, as an event."""
    if tag == Tag.TASKS:
        return TasksArrived(source, body[0], body[1])
    if tag == Tag.STEAL:
        return StealAsked(body)
    if tag == Tag.SNAPSHOT:
        return SnapshotAsked()
    if tag == Tag.DRAIN:
        return DrainAsked()
    if tag == Tag.ABORT:
        return AbortAsked()
    if tag == Tag.RETIRE:
        return RetireAsked()
    if tag == Tag.STOP:
        return StopAsked(body)
    raise RuntimeError(f"unexpected message tag {tag} from rank {source}")


# -- instructions ---------------------------------------------------------------------

class Send:
    """An instruction to send one message: ``dest``, ``tag`` and ``body``."""

    __slots__ = ("dest",)
    tag = -1

    def __init__(self, dest: int):
        self.dest = dest

    @property
    def body(self):
        return None

    def __eq__(self, other):
        return type(other) is type(self) and (other.dest, other.body) == (self.dest, self.body)

    def __repr__(self):
        return f"{type(self).__name__}(dest={self.dest})"


class SendTasks(Send):
    __slots__ = ("seq", "entries")
    tag = Tag.TASKS

    def __init__(self, dest: int, seq: int | None, entries: list):
        self.dest, self.seq, self.entries = dest, seq, entries

    @property
    def body(self):
        return (self.seq, self.entries)

    @property
    def n_tasks(self) -> int:
        return sum(len(e) for e in self.entries)

    def __repr__(self):
        return f"SendTasks(dest={self.dest}, seq={self.seq}, tasks={self.n_tasks})"


class SendSteal(Send):
    """Tell ``dest`` (the victim) to give some of its queue to ``thief``."""

    __slots__ = ("thief",)
    tag = Tag.STEAL

    def __init__(self, dest: int, thief: int):
        self.dest, self.thief = dest, thief

    @property
    def body(self):
        return self.thief

    def __repr__(self):
        return f"SendSteal(victim={self.dest}, thief={self.thief})"


class SendAbort(Send):
    __slots__ = ()
    tag = Tag.ABORT


class SendDrain(Send):
    __slots__ = ()
    tag = Tag.DRAIN


class SendSnapshot(Send):
    __slots__ = ()
    tag = Tag.SNAPSHOT


class SendRetire(Send):
    __slots__ = ()
    tag = Tag.RETIRE


class SendStop(Send):
    __slots__ = ("stop",)
    tag = Tag.STOP

    def __init__(self, dest: int, stop: Stop):
        self.dest, self.stop = dest, stop

    @property
    def body(self):
        return self.stop


class SendReport(Send):
    __slots__ = ("report",)
    tag = Tag.REPORT

    def __init__(self, dest: int, report: Report):
        self.dest, self.report = dest, report

    @property
    def body(self):
        return self.report


class CutReady(NamedTuple):
    """A consistent cut of the call (a ``CallState``) for the driver to store.

    ``reason``: "checkpoint" (write it in the background) or "preempt" (the
    final one: write it before the call ends).
    """

    state: Any
    reason: str
