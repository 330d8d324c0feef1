"""The master's scheduling logic, fed messages by hand (no MPI)."""

from hpcmicro.engine.master import Master
from hpcmicro.engine.policies import StaticPolicy, StealPolicy, proportional_split
from hpcmicro.engine.events import Report, State, Tag
from hpcmicro.engine.tasks import RootRun


def report(state, seq, done=0, spawned=0, queued=0, mean=0.001, acks=(), aborted=False, error=None):
    return Report(state, seq, done, spawned, queued, mean, None, tuple(acks), aborted, error)


def tasks_sent(msgs, dest=None):
    return sum(len(e) for d, t, (seq, entries) in [m for m in msgs if m[1] == Tag.TASKS] for e in entries
               if dest is None or d == dest)


def test_proportional_split_is_exact():
    assert proportional_split(10, [1, 1, 1]) == [4, 3, 3]
    assert proportional_split(7, [3, 1]) == [5, 2]
    assert sum(proportional_split(1001, [0.3, 2.2, 1.0])) == 1001


def test_static_seeds_everything_in_contiguous_shares_and_never_balances():
    m = Master([RootRun(0, 10)], StaticPolicy(), [1, 2], [1.0, 1.0], "map")
    out = m.start()
    assert [(d, [(e.start, e.stop) for e in body[1]]) for d, t, body in out] == [(1, [(0, 5)]), (2, [(5, 10)])]
    out = m.handle(1, Tag.REPORT, report(State.IDLE, 1, done=5))
    assert out == []  # no stealing from worker 2
    out = m.handle(2, Tag.REPORT, report(State.IDLE, 1, done=5))
    assert [t for _, t, _ in out] == [Tag.STOP, Tag.STOP] and m.done


def test_steal_seeds_half_then_hands_out_guided_chunks():
    m = Master([RootRun(0, 100)], StealPolicy(), [1, 2], [1.0, 1.0], "map")
    out = m.start()
    assert tasks_sent(out) == 50 and len(m.pool) == 50
    out = m.handle(1, Tag.REPORT, report(State.LOW, 1, done=20, queued=1, mean=1e-3))
    assert tasks_sent(out, 1) == 13  # min(ceil(50 * 0.5 / 2) = 13, 20 ms / 1 ms = 20)
    out = m.handle(2, Tag.REPORT, report(State.LOW, 1, done=20, queued=1, mean=4e-3))
    # Worker 2 is 4x slower: share 0.2, so min(ceil(37 * 0.2 / 2) = 4, 20 ms / mean 2.5 ms = 8)
    assert tasks_sent(out, 2) == 4


def test_capacity_weights_shape_the_seed():
    m = Master([RootRun(0, 100)], StealPolicy(), [1, 2], [3.0, 1.0], "map")
    out = m.start()
    assert tasks_sent(out, 1) == 38 and tasks_sent(out, 2) == 12


def test_idle_worker_gets_a_brokered_steal_and_termination_waits_for_the_ack():
    m = Master([RootRun(0, 4)], StealPolicy(), [1, 2], [1.0, 1.0], "map")
    m.start()  # 1 task each, 2 in the pool
    m.handle(1, Tag.REPORT, report(State.LOW, 1, queued=0))
    m.handle(2, Tag.REPORT, report(State.LOW, 1, queued=0))
    assert len(m.pool) == 0
    # Worker 1 finished everything; worker 2 reports a big queue.
    out = m.handle(2, Tag.REPORT, report(State.BUSY, 2, done=1, queued=5, mean=0.1))
    out = m.handle(1, Tag.REPORT, report(State.IDLE, 2, done=2))
    assert out == [(2, Tag.STEAL, 1)]
    assert m.workers[1].awaiting_from == 2
    # Worker 2 turns out to have run everything; the (empty) steal answer is acknowledged.
    out = m.handle(2, Tag.REPORT, report(State.IDLE, 2, done=1))
    assert not m.done  # worker 1's steal answer is still in flight
    out = m.handle(1, Tag.REPORT, report(State.IDLE, 2, acks=[2]))
    assert m.done and m.finished == m.created == 4


def test_spawned_tasks_delay_termination_until_reported_done():
    m = Master([RootRun(0, 1)], StealPolicy(), [1], [1.0], "reduce")
    m.start()
    m.handle(1, Tag.REPORT, report(State.BUSY, 1, done=1, spawned=3, queued=3))
    assert not m.done and m.created == 4
    m.handle(1, Tag.REPORT, report(State.IDLE, 1, done=3))
    assert m.done


def test_error_aborts_everyone_and_stops_once_all_acknowledged():
    m = Master([RootRun(0, 10)], StealPolicy(), [1, 2], [1.0, 1.0], "map")
    m.start()
    err = {"task_id": (3,), "payload_repr": "3", "rank": 1, "host": "h", "remote_traceback": "tb",
           "exc_type": "ValueError"}
    out = m.handle(1, Tag.REPORT, report(State.IDLE, 1, done=2, aborted=True, error=err))
    assert sorted((d, t) for d, t, _ in out) == [(1, Tag.ABORT), (2, Tag.ABORT)]
    assert len(m.pool) == 0
    assert not m.done  # worker 2 may still be running tasks
    out = m.handle(2, Tag.REPORT, report(State.BUSY, 1, done=3, queued=2))
    assert not m.done and not [t for _, t, _ in out if t == Tag.TASKS]  # nothing new while aborting
    out = m.handle(2, Tag.REPORT, report(State.IDLE, 1, aborted=True))
    assert m.done and all(body == ("error", err) for _, t, body in out if t == Tag.STOP)
