"""A task spawning many children queues each in O(1), not by a sorted insert (issue 10: 1M children)."""

import hpcmicro as hm
from hpcmicro.engine import taskqueue


def fan(x):
    if x < 0:
        spawn = hm.context().spawn
        for i in range(20000):
            spawn(i)
        return 0
    return 1


def test_many_children_of_one_task_need_no_sorted_inserts(monkeypatch):
    made = []

    class Counting(taskqueue._Descending):
        def __init__(self, entry):
            made.append(1)
            super().__init__(entry)

    monkeypatch.setattr(taskqueue, "_Descending", Counting)
    with hm.Runtime() as rt:
        assert rt.map_reduce(fan, [-1]) == 20000
    assert len(made) < 100, f"{len(made)} sort-key objects for 20000 children: inserts are not O(1)"
