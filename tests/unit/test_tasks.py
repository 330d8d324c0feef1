import pickle

import numpy as np
import pytest

import hpcmicro as hm
from hpcmicro.engine.taskqueue import TaskQueue
from hpcmicro.engine.tasks import RootRun, Spawned, TaskSource


def test_range_covers_exactly_once():
    r = hm.Range(103, 10)
    covered = [x for p in r for x in p]
    assert covered == list(range(103))
    assert len(r) == 11 and r.payload(10) == range(100, 103)


def test_blocks_tile_the_array_exactly_once():
    b = hm.Blocks((7, 10, 3), (3, 4, 2))
    count = np.zeros((7, 10, 3), int)
    for i, s in enumerate(b):
        assert b.payload(i) == s
        count[s] += 1
    assert (count == 1).all() and len(b) == 3 * 3 * 2


@pytest.mark.parametrize("make,msg", [
    (lambda: hm.Range(-1), "Range n must be >= 0"),
    (lambda: hm.Range(10, 0), "chunk must be > 0"),
    (lambda: hm.Range(10, 2.5), "chunk must be an integer"),
    (lambda: hm.Blocks((4, 4), (2,)), "has 2 dimensions but block (2,) has 1"),
    (lambda: hm.Blocks((4, -1), (2, 2)), "must be >= 0"),
    (lambda: hm.Blocks((4, 4), (2, 0)), "block entries must be > 0"),
    (lambda: hm.Task(1, priority="high"), "priority must be an int"),
])
def test_invalid_decompositions_are_clear_errors(make, msg):
    with pytest.raises(hm.InvalidCall, match=msg.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_task_source_finds_the_unpicklable_payload():
    src = TaskSource([1, 2, (lambda: 0), 4])
    with pytest.raises(hm.InvalidCall, match=r"task \(2,\) cannot be pickled"):
        src.check_picklable()


def test_task_source_runs_group_priorities():
    src = TaskSource([hm.Task(0, 1), hm.Task(1, 1), 2, hm.Task(3, 5)])
    runs = src.runs()
    assert [(r.start, r.stop, r.priority) for r in runs] == [(0, 2, 1), (2, 3, 0), (3, 4, 5)]


def drain(q):
    out = []
    while q:
        tid, payload, prio, run = q.pop()
        out.append(tid)
    return out


def test_queue_runs_priority_then_id_order():
    q = TaskQueue([RootRun(0, 3, 0), RootRun(3, 5, 2), Spawned((9, 0), "y", 2)])
    order = [q.pop()[0] for _ in range(5)]
    q.push(Spawned((1, 1), "b", 0))  # children exist only once their parent ran
    q.push(Spawned((1, 0), "a", 0))
    order += drain(q)
    assert order == [(3,), (4,), (9, 0), (0,), (1,), (1, 0), (1, 1), (2,)]


def test_queue_steal_takes_from_the_back_and_keeps_every_task_once():
    payloads = list(range(100, 120))
    q = TaskQueue([RootRun(0, 20, 0, payloads, 0)])
    q.pop()
    stolen = [e.packed() for e in q.take_back(len(q) // 2)]
    thief = TaskQueue(pickle.loads(pickle.dumps(stolen)))
    mine = []
    while q:
        tid, payload, _, _ = q.pop()
        mine.append((tid, payload))
    theirs = []
    while thief:
        tid, payload, _, _ = thief.pop()
        theirs.append((tid, payload))
    assert [t for t, _ in mine] == [(i,) for i in range(1, 11)]
    assert theirs == [((i,), 100 + i) for i in range(11, 20)]


def test_queue_take_front_splits_runs():
    q = TaskQueue([RootRun(0, 10, 0)])
    front = q.take_front(4)
    assert [(e.start, e.stop) for e in front] == [(0, 4)] and len(q) == 6


@pytest.mark.parametrize("make", [lambda: hm.Range(10**21), lambda: hm.Range(2**63), lambda: hm.Range(2**64, 1),
                                  lambda: hm.Blocks((10**10, 10**10), (1, 1))])
def test_task_counts_beyond_64_bits_are_invalid_at_construction(make):
    with pytest.raises(hm.InvalidCall, match=r"more than the 9223372036854775807 \(2\*\*63 - 1\) a call can hold"):
        make()


def test_largest_task_counts_still_have_a_len():
    assert len(hm.Range(2**63 - 1)) == 2**63 - 1
    assert len(hm.Range(10**21, 10**3)) == 10**18
    assert len(hm.Blocks((2**62, 2), (1, 2))) == 2**62
