"""The master's protocol machine, fed events by hand (no MPI, no threads, no clock)."""

from hpcmicro.engine.events import (
    CheckpointDue, CutReady, Preempt, Report, SendAbort, SendDrain, SendRetire, SendSnapshot, SendSteal, SendStop,
    SendTasks, Start, State, Tick, WorkerReport,
)
from hpcmicro.engine.master import Master
from hpcmicro.engine.policies import StaticPolicy, StealPolicy, proportional_split
from hpcmicro.engine.tasks import RootRun


def report(state, seq, done=0, spawned=0, queued=0, mean=0.001, acks=(), aborted=False, error=None, **kw):
    return Report(state, seq, done, spawned, queued, mean, None, tuple(acks), aborted, error, **kw)


class Driven:
    """A master plus the time; every event is followed by validate()."""

    def __init__(self, *args, **kwargs):
        self.m = Master(*args, **kwargs)
        self.now = 0.0

    def start(self):
        return self._do(Start(self.now))

    def report(self, source, rep):
        self.now += 0.001
        return self._do(WorkerReport(source, rep, self.now))

    def _do(self, event):
        out = self.m.handle(event)
        self.m.validate()
        return out

    def tick(self, dt=0.001):
        self.now += dt
        return self._do(Tick(self.now))


def tasks_sent(out, dest=None):
    return sum(i.n_tasks for i in out if isinstance(i, SendTasks) and (dest is None or i.dest == dest))


def test_proportional_split_is_exact():
    assert proportional_split(10, [1, 1, 1]) == [4, 3, 3]
    assert proportional_split(7, [3, 1]) == [5, 2]
    assert sum(proportional_split(1001, [0.3, 2.2, 1.0])) == 1001


def test_static_seeds_everything_in_contiguous_shares_and_never_balances():
    d = Driven([RootRun(0, 10)], StaticPolicy(), [1, 2], [1.0, 1.0], "map")
    out = d.start()
    assert [(i.dest, [(e.start, e.stop) for e in i.entries]) for i in out] == [(1, [(0, 5)]), (2, [(5, 10)])]
    assert d.report(1, report(State.IDLE, 1, done=5)) == []  # no stealing from worker 2
    out = d.report(2, report(State.IDLE, 1, done=5))
    assert [type(i) for i in out] == [SendStop, SendStop] and d.m.done


def test_static_seeds_in_id_order_whatever_the_priorities():
    runs = [RootRun(0, 4, 0), RootRun(4, 6, 5), RootRun(6, 10, 0)]
    d = Driven(runs, StaticPolicy(), [1, 2], [1.0, 1.0], "map")
    out = d.start()
    assert [[(e.start, e.stop, e.priority) for e in i.entries] for i in out] == \
        [[(0, 4, 0), (4, 5, 5)], [(5, 6, 5), (6, 10, 0)]]


def test_steal_seeds_half_then_hands_out_guided_chunks():
    d = Driven([RootRun(0, 100)], StealPolicy(), [1, 2], [1.0, 1.0], "map")
    out = d.start()
    assert tasks_sent(out) == 50 and len(d.m.pool) == 50
    out = d.report(1, report(State.LOW, 1, done=20, queued=1, mean=1e-3))
    assert tasks_sent(out, 1) == 13  # min(ceil(50 * 0.5 / 2) = 13, 20 ms / 1 ms = 20)
    out = d.report(2, report(State.LOW, 1, done=20, queued=1, mean=4e-3))
    # Worker 2 is 4x slower: share 0.2, so min(ceil(37 * 0.2 / 2) = 4, 20 ms / mean 2.5 ms = 8)
    assert tasks_sent(out, 2) == 4


def test_capacity_weights_shape_the_seed():
    d = Driven([RootRun(0, 100)], StealPolicy(), [1, 2], [3.0, 1.0], "map")
    out = d.start()
    assert tasks_sent(out, 1) == 38 and tasks_sent(out, 2) == 12


def test_idle_worker_gets_a_brokered_steal_and_termination_waits_for_the_ack():
    d = Driven([RootRun(0, 4)], StealPolicy(), [1, 2], [1.0, 1.0], "map")
    d.start()  # 1 task each, 2 in the pool
    d.report(1, report(State.LOW, 1, queued=0))
    d.report(2, report(State.LOW, 1, queued=0))
    assert len(d.m.pool) == 0
    # Worker 1 finished everything; worker 2 reports a big queue.
    d.report(2, report(State.BUSY, 2, done=1, queued=5, mean=0.1))
    out = d.report(1, report(State.IDLE, 2, done=2))
    assert out == [SendSteal(2, 1)]
    assert d.m.workers[1].awaiting_from == 2
    kind, details = d.m.decisions[-1][1:]
    assert kind == "steal" and details["thief"] == 1 and details["victim"] == 2 and details["tasks"] == 2
    # Worker 2 turns out to have run everything; the (empty) steal answer is acknowledged.
    d.report(2, report(State.IDLE, 2, done=1))
    assert not d.m.done  # worker 1's steal answer is still in flight
    d.report(1, report(State.IDLE, 2, acks=[2]))
    assert d.m.done and d.m.finished == d.m.created == 4


def test_spawned_tasks_delay_termination_until_reported_done():
    d = Driven([RootRun(0, 1)], StealPolicy(), [1], [1.0], "reduce", op=lambda a, b: a + b, n_roots=1)
    d.start()
    d.report(1, report(State.BUSY, 1, done=1, spawned=3, queued=3))
    assert not d.m.done and d.m.created == 4
    d.report(1, report(State.IDLE, 1, done=3))
    assert d.m.done


ERR = {"task_id": (3,), "payload_repr": "3", "rank": 1, "host": "h", "remote_traceback": "tb", "exc_type": "ValueError"}


def test_error_aborts_everyone_and_stops_once_all_acknowledged():
    d = Driven([RootRun(0, 10)], StealPolicy(), [1, 2], [1.0, 1.0], "map")
    d.start()
    out = d.report(1, report(State.IDLE, 1, done=2, aborted=True, error=ERR))
    assert sorted(out, key=lambda i: i.dest) == [SendAbort(1), SendAbort(2)]
    assert len(d.m.pool) == 0
    assert not d.m.done  # worker 2 may still be running tasks
    out = d.report(2, report(State.BUSY, 1, done=3, queued=2))
    assert not d.m.done and not tasks_sent(out)  # nothing new while aborting
    out = d.report(2, report(State.IDLE, 1, aborted=True))
    assert d.m.done and all(i.stop == ("error", ERR) for i in out if isinstance(i, SendStop))


def test_error_during_a_checkpoint_round_still_ends_the_call():
    # The round's snapshots will never all come; the abort must not wait for them.
    d = Driven([RootRun(0, 10)], StealPolicy(), [1, 2], [1.0, 1.0], "map")
    d.start()
    d.report(1, report(State.BUSY, 1, queued=5))
    d.report(2, report(State.BUSY, 1, queued=5))
    out = d.m.handle(CheckpointDue(d.now))
    assert sorted(i.dest for i in out if isinstance(i, SendSnapshot)) == [1, 2]
    d.report(1, report(State.IDLE, 1, done=1, aborted=True, error=ERR))
    d.report(2, report(State.IDLE, 1, aborted=True))
    assert d.m.done and d.m.stop.kind == "error"


def test_preemption_during_a_checkpoint_round_takes_a_newer_cut():
    d = Driven([RootRun(0, 10)], StealPolicy(), [1], [1.0], "map")
    d.start()
    d.report(1, report(State.BUSY, 1, queued=10))
    out = d.m.handle(CheckpointDue(d.now))
    assert out == [SendSnapshot(1)]
    out = d.m.handle(Preempt(15, d.now))
    assert out == [SendDrain(1)]
    # The checkpoint round's snapshot: the lone worker got all 10 tasks, 2 are done.
    out = d.report(1, report(State.BUSY, 1, done=2, queued=8, snapshot={"pending": [RootRun(2, 10)], "tree": None}))
    first = [i for i in out if isinstance(i, CutReady)]
    assert [c.reason for c in first] == ["checkpoint"] and not d.m.done
    assert first[0].state.pending_roots == [(2, 10, 0)]
    # Drained after 1 more: a second round, and the final cut holds it.
    out = d.report(1, report(State.DRAINED, 1, done=1, queued=7))
    assert out == [SendSnapshot(1)]
    out = d.report(1, report(State.DRAINED, 1, queued=7, snapshot={"pending": [RootRun(3, 10)], "tree": None}))
    final = [i for i in out if isinstance(i, CutReady)]
    assert [c.reason for c in final] == ["preempt"]
    assert final[0].state.pending_roots == [(3, 10, 0)]
    assert d.m.done and d.m.stop.kind == "preempted"


def test_a_hung_worker_is_retired_only_when_another_can_take_over():
    d = Driven([RootRun(0, 10)], StaticPolicy(), [1, 2], [1.0, 1.0], "map")
    d.start()
    out = d.report(1, report(State.BUSY, 1, queued=4, hung=True))
    assert out == [SendRetire(1)]
    # Its hand-back returns to the pool, and the static policy hands it to the idle worker.
    d.report(2, report(State.IDLE, 1, done=5))
    out = d.report(1, report(State.RETIRED, 1, handback=([RootRun(0, 5)], None)))
    assert tasks_sent(out, 2) == 5 and d.m.workers[1].retired
    d.report(2, report(State.IDLE, 2, done=5))
    assert d.m.done and d.m.finished == 10


def test_a_hung_worker_alone_is_waited_for():
    d = Driven([RootRun(0, 4)], StealPolicy(), [1], [1.0], "map")
    d.start()
    out = d.report(1, report(State.BUSY, 1, queued=1, hung=True))
    assert out == [] and d.m.workers[1].hung
    assert d.tick(5.0) == []
    d.report(1, report(State.LOW, 1, done=2, queued=0))  # the slow task returned
    assert not d.m.workers[1].hung


def test_no_worker_is_retired_during_a_snapshot_round():
    # A hand-back in the middle of a round would put its tasks both in the pool and in a snapshot.
    d = Driven([RootRun(0, 10)], StealPolicy(), [1, 2], [1.0, 1.0], "map")
    d.start()
    assert d.m.handle(CheckpointDue(d.now)) == []  # the seeds are still on their way
    d.report(1, report(State.BUSY, 1, queued=3))
    assert d.report(2, report(State.BUSY, 1, queued=2)) == [SendSnapshot(1), SendSnapshot(2)]
    out = d.report(1, report(State.BUSY, 1, queued=2, hung=True))
    assert not [i for i in out if isinstance(i, SendRetire)]  # not while the round is under way
    d.report(1, report(State.BUSY, 1, queued=2, hung=True, snapshot={"pending": [RootRun(0, 3)], "tree": None}))
    out = d.report(2, report(State.BUSY, 1, queued=2, snapshot={"pending": [RootRun(3, 5)], "tree": None}))
    cuts = [i for i in out if isinstance(i, CutReady)]
    assert len(cuts) == 1 and cuts[0].state.pending_roots == [(0, 3, 0), (3, 5, 0), (5, 10, 0)]
    assert SendRetire(1) in out  # the round is over: now it may hand back
    assert not d.m.workers[1].settled  # and no new round begins before its hand-back has arrived
    assert d.m.handle(CheckpointDue(d.now)) == []


def _scan_victim(thief, views):
    """The steal policy's choice by a plain scan in rank order: the most queued work among the views it
    accepts, the lowest rank on ties (what the heap order must reproduce)."""
    pol = StealPolicy()
    idle = thief.state == State.IDLE
    min_queued = pol.IDLE_THIEF_MIN_QUEUED if idle else pol.LOW_THIEF_MIN_QUEUED
    floor = 0.0 if idle else pol.LOW_THIEF_FACTOR * thief.queued_work
    best = None
    for v in views:
        if v is thief or not v.active or v.queued < min_queued or v.queued_work <= 0.0 or v.queued_work < floor:
            continue
        if best is None or v.queued_work > best.queued_work:
            best = v
    return best


def test_the_victim_heap_picks_what_a_scan_of_every_worker_picks():
    import random

    rng = random.Random(7)
    n = 40
    d = Driven([RootRun(0, 10)], StealPolicy(), list(range(1, n + 1)), [1.0] * n, "map")
    d.start()
    seqs = {r: d.m.workers[r].sent_seq for r in d.m.workers}
    picked = 0
    for _ in range(600):
        r = rng.randint(1, n)
        w = d.m.workers[r]
        if not w.settled:
            continue
        queued = rng.choice([0, 1, 2, 3, 4, 5, 8, 13, 40])
        mean = rng.choice([0.001, 0.002, 0.01]) if rng.random() < 0.3 else w.mean_task_s or 0.001
        d.report(r, report(State.BUSY, seqs[r], queued=queued, mean=mean))  # validate() checks the heap
        thief = d.m.workers[rng.randint(1, n)]
        state, thief.state = thief.state, rng.choice([State.IDLE, State.LOW])  # as it would ask
        expected = _scan_victim(thief, [d.m.workers[k] for k in sorted(d.m.workers)])
        got = d.m._pick_victim(thief)
        thief.state = state
        assert got is expected, (got, expected)
        picked += got is not None
        d.m.validate()  # the entries taken were put back
    assert picked > 50  # many comparisons were about real choices, not two Nones
