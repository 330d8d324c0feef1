"""The worker's protocol machine: what a worker says and does in answer to messages.

``WorkerProtocol.handle(event) -> [instruction]`` with the events of
``events.py`` (tasks arrived, a steal, a snapshot, drain, abort, retire, stop,
a task ran, a tick, a signal) and ``Send*`` instructions out. It owns the
protocol state (what was requested, acknowledged, seen), reads and takes what
the ``Executor`` recorded, and decides when to report. No clock, no MPI, no
threads: the worker driver calls it under its lock from both of its threads
and sends what it returns.

A worker's ``now`` is on the executor's clock (``time.perf_counter``), which
times the kernels: a task's overrun is ``now`` minus its start.

``next_step(now)`` tells the kernel thread what to do: ``RUN`` the front task,
``WAIT`` for a message, or ``EXIT`` (the call is over).
"""

from __future__ import annotations

from .events import (
    AbortAsked, DrainAsked, Report, ResultUnsendable, RetireAsked, SendReport, SendTasks, Signalled, SnapshotAsked,
    State, StealAsked, StopAsked, TaskRan, TasksArrived, Tick,
)

__all__ = ["WorkerProtocol", "RUN", "WAIT", "EXIT"]

RUN, WAIT, EXIT = "run", "wait", "exit"


class WorkerProtocol:
    # How often a busy worker tells the master its queue length and progress.
    STATUS_INTERVAL_S = 0.05

    def __init__(self, executor, policy, master: int = 0, task_timeout: float | None = None):
        self.ex = executor
        self.policy = policy
        self.master = master
        self.task_timeout = task_timeout
        self.seq_seen = 0  # TASKS messages from the master seen so far
        self.requested = False  # a LOW/IDLE request is outstanding
        # What the last report said (None: stale, say it again). It starts as IDLE: the master takes
        # every worker it seeded nothing for as idle, so a worker waiting for its seed sends nothing.
        self.last_state: int | None = State.IDLE
        self.acks: list = []  # peers whose steal answers arrived since the last report
        self.aborted = False
        self.draining = False
        self.stopped = False
        self.stop = None
        self.signal_sent = False
        self.hung = False  # the running task overran task_timeout
        self._hung_attempt: float | None = None  # start time of the attempt reported as hung
        self.now = 0.0
        self.last_status = 0.0  # when the last report went out

    # -- the kernel thread -----------------------------------------------------------
    def next_step(self, now: float) -> tuple[str, list]:
        """What the kernel thread does next, and any report to send first."""
        self.now = now
        ex = self.ex
        if self.stopped:
            return EXIT, []
        if ex.retired:
            return WAIT, []  # all our work went to others; wait for the end of the call
        if self.aborted:
            ex.take_results()  # the call is aborted: these go nowhere
        wait_state = None
        if self.aborted or not ex.queue:
            wait_state = State.IDLE
        elif self.draining:
            wait_state = State.DRAINED
        if wait_state is None:
            return RUN, []
        # Nothing to run: say so once (again after each change), then wait.
        if self.last_state != wait_state or (self.acks and not self.requested):
            return WAIT, [self._report(wait_state)]
        return WAIT, []

    @property
    def can_run(self) -> bool:
        """Whether the kernel thread may run the next task without asking ``next_step``."""
        return bool(self.ex.queue) and not (self.aborted or self.stopped or self.draining or self.ex.retired)

    # -- events ----------------------------------------------------------------------
    def handle(self, event) -> list:
        kind = type(event)
        if kind is TaskRan:
            return self._ran(event)
        if kind is TasksArrived:
            return self._tasks(event)
        if kind is StealAsked:
            return self._steal(event.thief)
        if kind is Tick:
            return self._tick(event.now)
        if kind is SnapshotAsked:
            snapshot = {"pending": self.ex.pending_entries(), "tree": self.ex.take_tree_part()}
            return [self._report(self._current_state(), snapshot=snapshot)]
        if kind is DrainAsked:
            self.draining = True
            self.ex.halt = True  # start no new task
            self.last_state = None
            return []
        if kind is AbortAsked:
            if not self.aborted:  # a worker whose kernel failed has aborted itself and said so
                self.aborted = True
                self.ex.halt = True
                self.ex.queue.clear()
                self.last_state = None  # tell the master we dropped our work
            return []
        if kind is RetireAsked:
            return self._retire()
        if kind is StopAsked:
            self.stopped = True
            self.ex.halt = True
            self.stop = event.stop
            return []
        if kind is ResultUnsendable:  # as a kernel failure: the call ends with that task's TaskError
            self.ex.error = event.error
            self.ex.queue.clear()
            self.ex.halt = True
            self.aborted = True
            return [self._report(State.IDLE)]
        if kind is Signalled:
            if self.signal_sent:
                return []
            self.signal_sent = True
            return [self._report(self._current_state(), signal=event.signum)]
        raise TypeError(f"worker: unknown event {event!r}")

    def _ran(self, event: TaskRan) -> list:
        self.now = now = event.now
        ex = self.ex
        was_hung, self.hung = self.hung, False  # the overrunning task returned: no need to retire us
        if not event.ok:
            ex.queue.clear()
            self.aborted = True  # the master will ABORT everyone
            return [self._report(State.IDLE)]
        if self.aborted or self.stopped or self.draining or ex.retired:
            return []
        queued = len(ex.queue)
        if not self.requested and self.policy.wants_more(queued, ex.mean_task_s):
            return [self._report(State.LOW if queued else State.IDLE)]
        if was_hung or now - self.last_status >= self.STATUS_INTERVAL_S:
            return [self._report(State.BUSY)]
        return []

    def _tasks(self, event: TasksArrived) -> list:
        ex = self.ex
        if event.seq is not None:
            self.seq_seen = event.seq
        else:  # a steal answer from a peer
            self.acks.append(event.source)
            if event.entries:
                ex.stats.steals_received += 1
                ex.stats.tasks_received += sum(len(e) for e in event.entries)
        if not self.aborted and not ex.retired:
            ex.queue.push_entries(event.entries)
        self.requested = False
        self.last_state = None  # whatever we said before is stale
        return []

    def _steal(self, thief: int) -> list:
        ex = self.ex
        k = 0 if (self.aborted or self.draining or ex.retired) else self.policy.steal_size(len(ex.queue))
        entries = ex.give_tasks(k) if k else []
        if entries:
            ex.stats.steals_given += 1
            ex.stats.tasks_given += sum(len(e) for e in entries)
        return [SendTasks(thief, None, entries)]

    def _tick(self, now: float) -> list:
        """Time passed: notice a task that overran task_timeout (once per attempt)."""
        self.now = now
        ex = self.ex
        if not self.task_timeout or not ex.current or ex.retired or self.aborted or self.hung:
            return []
        started = ex.current_started
        if now - started <= self.task_timeout or self._hung_attempt == started:
            return []
        self.hung = True
        self._hung_attempt = started
        ex.stats.hung += 1
        return [self._report(self._current_state())]

    def _retire(self) -> list:
        """Hand back everything but the late result of the running task (which is dropped)."""
        ex = self.ex
        if ex.retired:
            return []
        ex.retired = True
        ex.halt = True
        self.hung = False
        entries = ex.pending_entries()
        ex.queue.clear()
        return [self._report(State.RETIRED, handback=(entries, ex.take_tree_part()))]

    # -- reports ---------------------------------------------------------------------
    def _current_state(self) -> int:
        return self.last_state if self.last_state is not None else State.BUSY

    def _report(self, state: int, snapshot=None, handback=None, signal: int = 0) -> SendReport:
        ex = self.ex
        results = ex.take_results() if ex.mode == "map" else None
        error, ex.error = ex.error, None
        rep = Report(state, self.seq_seen, ex.done, ex.spawned, len(ex.queue), ex.mean_task_s, results,
                     tuple(self.acks), self.aborted, error, ex.take_failed(), snapshot, handback, signal, self.hung)
        ex.done = ex.spawned = 0
        self.acks.clear()
        self.last_state = state
        self.last_status = self.now
        if state in State.WANTING:
            self.requested = True
            ex.stats.requests += 1
        return SendReport(self.master, rep)

    # -- invariants ------------------------------------------------------------------
    def validate(self) -> None:
        ex = self.ex
        assert self.seq_seen >= 0 and ex.done >= 0 and ex.spawned >= 0
        ex.queue.validate()
        if ex.retired:
            assert not ex.queue, "a retired worker holds tasks"
        if self.stopped:
            assert self.stop is not None
