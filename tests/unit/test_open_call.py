"""The master's open-ended calls (hpcmicro.futures), driven without MPI under random schedules.

Tasks are submitted in bursts while the call runs (``Submit``), results are
taken from the master as they come (as driver/opencall.py does), and the
call ends only after ``Close``; every submitted task's result must come back
exactly once, equal to the kernel applied serially.
"""

import random

import pytest

from hpcmicro.engine.events import Close, Start, Submit
from hpcmicro.engine.master import Master
from hpcmicro.engine.policies import StaticPolicy, StealPolicy
from hpcmicro.engine.tasks import RootRun
from tests.unit.engine_harness import Cluster


def cube(x):
    return x ** 3


def open_cluster(policy, n_workers, seed):
    c = Cluster(cube, [], policy, n_workers, seed=seed)
    ranks = sorted(c.workers)
    c.pairs = {}  # drop what the closed, empty call of the constructor sent
    c.master = Master([], policy, ranks, [1.0] * n_workers, "map", open_ended=True)
    c.n_roots = 10 ** 9  # no task spawns: every result run is root tasks only (Cluster.expand)
    c._send(0, c.master.handle(Start(0.0)))
    return c


@pytest.mark.parametrize("policy", [StealPolicy, StaticPolicy])
@pytest.mark.parametrize("seed", range(6))
def test_tasks_submitted_while_the_call_runs_each_come_back_once(policy, seed):
    rng = random.Random(seed)
    c = open_cluster(policy(), rng.randint(1, 4), seed)
    got: dict = {}
    submitted = 0

    def take():
        segments, c.master.segments = c.master.segments, []
        for first, values in segments:
            for k, v in enumerate(values):
                index = first[0] + k
                assert index not in got, f"task {index} came back twice"
                got[index] = v

    for _ in range(rng.randint(3, 8)):  # bursts of submits, with the cluster running between them
        n = rng.randint(1, 60)
        c._send(0, c.master.handle(Submit([RootRun(submitted, submitted + n, 0, list(range(submitted,
                                                                                            submitted + n)))],
                                          c.now)))
        submitted += n
        for _ in range(rng.randint(0, 400)):
            c.step()
            take()
    for _ in range(100_000):  # everything submitted finishes; the call stays open
        if len(got) == submitted:
            break
        c.step()
        take()
    assert len(got) == submitted
    assert not c.master.done, "an open call ended before Close"
    c._send(0, c.master.handle(Close(c.now)))
    c.run()
    take()
    assert c.master.done and c.master.stop.kind == "ok"
    assert got == {i: cube(i) for i in range(submitted)}


def test_a_closed_call_refuses_submissions():
    c = open_cluster(StealPolicy(), 2, 0)
    c._send(0, c.master.handle(Close(c.now)))
    with pytest.raises(RuntimeError, match="not open-ended, or closed"):
        c.master.handle(Submit([RootRun(0, 1, 0, [1])], c.now))
