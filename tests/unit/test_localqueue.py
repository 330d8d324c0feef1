"""The worker's queue: depth-first for its owner, oldest-first for thieves, ids only for tasks that leave."""

from hpcmicro.engine.frames import Frame, root_frame
from hpcmicro.engine.localqueue import LocalQueue
from hpcmicro.engine.tasks import RootRun, Spawned


def drain(q):
    out = []
    while q:
        g, j, payload, fresh = q.pop()
        out.append((g.frame.child_path(j), payload, fresh))
        q.validate()
    return out


def test_the_owner_runs_depth_first_in_pre_order_and_outside_work_last():
    q = LocalQueue(root_frame())
    q.push_entries([RootRun(0, 2, 0, ["r0", "r1"])])
    g, j, payload, fresh = q.pop()
    assert (j, payload, fresh) == (0, "r0", True)
    a = Frame(g.frame, j, 3, None)
    q.push_children(a, ["a0", "a1"], 0)
    q.push_entries([RootRun(5, 6, 0, ["r5"])])  # arrives meanwhile: runs after the owner's work
    order = drain(q)
    assert [t for t, _, _ in order] == [(0, 0), (0, 1), (1,), (5,)]
    assert [f for _, _, f in order] == [False, False, False, True]


def test_thieves_take_the_oldest_tasks_with_their_ids_and_the_cut_frames():
    q = LocalQueue(root_frame())
    q.push_entries([RootRun(0, 1, 0, ["r0"])])
    g, j, _, _ = q.pop()
    top = Frame(g.frame, j, 5, None)
    q.push_children(top, [f"c{i}" for i in range(4)], 0)
    g, j, _, _ = q.pop()  # (0, 0) runs and spawns
    deep = Frame(g.frame, j, 3, None)
    q.push_children(deep, ["d0", "d1"], 0)
    entries, cut = q.take_back(2)
    assert [(e.id, e.payload) for e in entries] == [((0, 2), "c2"), ((0, 3), "c3")]
    assert cut == [top]
    assert [t for t, _, _ in drain(q)] == [(0, 0, 0), (0, 0, 1), (0, 1)]


def test_stolen_siblings_arrive_as_one_group_and_keep_their_ids():
    q = LocalQueue(root_frame())
    q.push_entries([Spawned((4, 1, j), f"s{j}", 0) for j in (2, 3, 4)] + [Spawned((7, 0), "x", 0)])
    assert len(q) == 4 and len(q.frames()) == 2
    assert [e.id for e in q.entries()] == [(4, 1, 2), (4, 1, 3), (4, 1, 4), (7, 0)]
    assert drain(q) == [((4, 1, 2), "s2", True), ((4, 1, 3), "s3", False), ((4, 1, 4), "s4", False),
                        ((7, 0), "x", True)]


def test_higher_priorities_run_first_and_thieves_take_the_lowest():
    q = LocalQueue(root_frame())
    q.push_entries([RootRun(0, 1, 0, ["low"]), RootRun(1, 2, 5, ["high"])])
    assert not q.uniform
    g, j, payload, _ = q.pop()
    assert payload == "high"
    f = Frame(g.frame, j, 3, None)
    q.push_children(f, ["c0", "c1"], 0, {1: 9})  # mixed priorities among siblings
    assert q.pop()[2] == "c1"
    entries, _ = q.take_back(1)
    assert [getattr(e, "payloads", None) for e in entries] == [["low"]]
    assert [p for _, p, _ in drain(q)] == ["c0"]


def test_decomposition_roots_carry_no_payloads_and_entries_rebuild_the_runs():
    q = LocalQueue(root_frame())
    q.push_entries([RootRun(10, 20)])
    g, start, stop, fresh = q.take_top(4)
    assert (start, stop, fresh, g.payloads) == (10, 14, True, None)
    (run,) = q.entries()
    assert (run.start, run.stop, run.payloads) == (14, 20, None)
