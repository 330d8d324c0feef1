"""Real MPI jobs across emulated hosts: separate network, UTS, IPC and mount namespaces.

Each host is a network namespace on a bridge, with its own hostname and its own
/dev/shm (cluster.py, docs/multihost.md): MPICH ranks on two hosts can talk only
over TCP, and MPICH sees one node per host.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import pytest

from hpcmicro.io.checkpoint import CheckpointError, read_checkpoint
from hpcmicro.kernels import uts
from tests.mpirun import SCENARIOS, finish, kill_job, run_command
from tests.multihost.programs import irregular_value

PROGRAMS = Path(__file__).resolve().parent / "programs.py"
PY = sys.executable


def by_rank(run) -> dict:
    assert run.returncode == 0, str(run)
    return {r["rank"]: r for r in run.reports()}


# -- 1. plain MPI: where the ranks are, and traffic between the hosts ---------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("netmod", ["ucx", "ofi"])
def test_two_hosts_two_ranks_each(cluster, netmod):
    a, b = cluster.hosts["a"], cluster.hosts["b"]
    sent_before = {h.key: h.tx_bytes() for h in (a, b)}
    run = cluster.run([("a", 2), ("b", 2)], [PY, PROGRAMS, "where"], timeout=60, netmod=netmod)
    reps = by_rank(run)
    assert sorted(reps) == [0, 1, 2, 3], str(run)
    # Ranks 0, 1 on host a; 2, 3 on host b: by hostname, by MPI's processor name, by namespace.
    for r, host in ((0, a), (1, a), (2, b), (3, b)):
        assert reps[r]["hostname"] == host.hostname, reps[r]
        assert reps[r]["processor"] == host.hostname, reps[r]
    assert reps[0]["netns"] == reps[1]["netns"] != reps[2]["netns"] == reps[3]["netns"]
    assert os.readlink("/proc/self/ns/net") not in {reps[0]["netns"], reps[2]["netns"]}
    # One /dev/shm per host, shared by the host's ranks only.
    assert reps[0]["shm"] == reps[1]["shm"] != reps[2]["shm"] == reps[3]["shm"]
    # MPI's shared-memory split: one group per host.
    assert [reps[r]["local_members"] for r in range(4)] == [[0, 1], [0, 1], [2, 3], [2, 3]]
    assert all(reps[r]["local_size"] == 2 for r in range(4))
    # Numpy data crossed the hosts intact.
    assert all(reps[r]["allreduce_ok"] for r in range(4))
    assert reps[0]["pong_ok"] is True
    # ...and over the veths: 8 MiB went each way at least (ping 0 -> 3, pong 3 -> 0, plus the allreduce).
    for h in (a, b):
        assert h.tx_bytes() - sent_before[h.key] > 8 << 20, (h, netmod)


# -- 2. hpcmicro across the hosts ---------------------------------------------------------


@pytest.mark.timeout(90)
def test_uts_count_steals_across_hosts(cluster):
    """One UTS root on host a's first worker: host b gets work only by stealing it."""
    run = cluster.run([("a", 2), ("b", 2)], [PY, PROGRAMS, "uts_hosts", json.dumps({"preset": "SMALL_GEO"})],
                      timeout=60)
    reps = by_rank(run)
    rep = reps[0]
    assert rep["hostname"] == "mh-a"  # the master (rank 0) is on host a
    serial = uts.serial_count(uts.SMALL_GEO)
    assert sum(rep["per_host"].values()) == serial == rep["tasks"]
    assert set(rep["per_host"]) == {"mh-a", "mh-b"}, rep  # nodes ran on both hosts
    assert min(rep["per_host"].values()) > 0
    assert rep["steals"] > 0
    # Per worker: ranks 2 and 3 are host b's; their tasks are what host b counted.
    workers = {w["rank"]: w for w in rep["workers"]}
    assert sorted(workers) == [1, 2, 3]
    assert workers[1]["tasks"] == rep["per_host"]["mh-a"]
    assert workers[2]["tasks"] + workers[3]["tasks"] == rep["per_host"]["mh-b"]
    assert workers[2]["steals_received"] + workers[3]["steals_received"] > 0
    # Every rank got the same result.
    assert all(reps[r]["per_host"] == rep["per_host"] for r in range(4))


@pytest.mark.timeout(90)
def test_one_group_per_host_from_the_shared_memory_split(cluster):
    """group_size="node": each host's lowest rank serves the others there; work crosses hosts only
    between the groups, brokered by the master."""
    run = cluster.run([("a", 3), ("b", 3)],
                      [PY, PROGRAMS, "uts_hosts", json.dumps({"preset": "SMALL_GEO", "group_size": "node"})],
                      timeout=60)
    reps = by_rank(run)
    rep = reps[0]
    assert all(reps[r]["layout"] == [[1, [2]], [3, [4, 5]]] for r in range(6)), reps  # ranks 0-2 on a, 3-5 on b
    assert sum(rep["per_host"].values()) == uts.serial_count(uts.SMALL_GEO) == rep["tasks"]
    assert set(rep["per_host"]) == {"mh-a", "mh-b"} and min(rep["per_host"].values()) > 0
    assert rep["steals"] > 0  # the one root starts in host a's group: host b's got work by a steal
    workers = {w["rank"]: w for w in rep["workers"]}
    assert sorted(workers) == [2, 4, 5]  # group masters run no task
    assert workers[2]["tasks"] == rep["per_host"]["mh-a"]
    assert workers[4]["tasks"] + workers[5]["tasks"] == rep["per_host"]["mh-b"]


@pytest.fixture(scope="module")
def irregular_reference():
    """The same program in one process (no mpiexec): hpcmicro's in-process master and worker."""
    run = run_command([PY, str(PROGRAMS), "irregular_sum", json.dumps({"n": 300})], timeout=60)
    return run.report()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("policy", ["steal", "static"])
def test_irregular_sum_on_three_hosts_is_bitwise_serial(cluster, irregular_reference, policy):
    run = cluster.run([("a", 2), ("b", 1), ("c", 1)],
                      [PY, PROGRAMS, "irregular_sum", json.dumps({"n": 300, "policy": policy})], timeout=60)
    reps = by_rank(run)
    rep = reps[0]
    serial = [irregular_value(i)[0] for i in range(300)]  # computed here, in the test process
    assert rep["values"] == [v.hex() for v in serial]
    assert rep["total"] == irregular_reference["total"]  # bitwise: the reduction tree is fixed by task ids
    assert math.isclose(float.fromhex(rep["total"]), math.fsum(serial), rel_tol=1e-12)
    assert rep["hosts"] == ["mh-a", "mh-b", "mh-c"]  # workers on all three hosts ran tasks
    assert {reps[r]["total"] for r in reps} == {rep["total"]}
    assert [reps[r]["hostname"] for r in range(4)] == ["mh-a", "mh-a", "mh-b", "mh-c"]


# -- 3. a checkpoint written on one layout, resumed on others ---------------------------------

CHECKPOINTED = {"n": 800, "roots": 40, "every": 0.05}
RESULT_KEYS = ("phase1", "phase2", "n2", "tree")


@pytest.fixture(scope="module")
def checkpointed_reference():
    """The uninterrupted run, in one process without checkpoints (as tests/faults/test_restart.py)."""
    run = run_command([PY, str(SCENARIOS), "checkpointed", json.dumps(CHECKPOINTED)], timeout=120)
    rep = run.report()
    return {k: rep[k] for k in RESULT_KEYS}


def progress(path):
    """(calls complete, tasks finished in the first incomplete call), or None before a readable file."""
    try:
        _, calls = read_checkpoint(path)
    except (CheckpointError, OSError):
        return None  # not written yet
    done = sum(c.complete for c in calls)
    open_calls = [c for c in calls if not c.complete]
    return done, (open_calls[0].finished if open_calls else 0)


def kill_after_progress(proc, path, beyond, timeout=60):
    """Kill the whole job (every rank at once) once the checkpoint shows progress past ``beyond``."""
    deadline = time.monotonic() + timeout
    while True:
        p = progress(path)
        if p is not None and p > beyond and p[0] < 3:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            kill_job(proc.pid)
            out, err = proc.communicate()
            raise AssertionError(f"no checkpoint progress past {beyond} before the job ended (at {p})\n"
                                 f"exit {proc.returncode}\n{out[-2000:]}\n{err[-2000:]}")
        time.sleep(0.05)
    kill_job(proc.pid)
    proc.communicate(timeout=30)
    after = progress(path)
    assert after is not None and after[0] < 3, after  # killed mid-run: work was left
    return after


@pytest.mark.timeout(120)
def test_checkpoint_from_one_layout_resumes_on_others(cluster, tmp_path, checkpointed_reference):
    ckpt = tmp_path / "run.h5"  # /tmp: the same file system in every namespace (only /dev/shm differs)
    params = dict(CHECKPOINTED, checkpoint=str(ckpt))
    program = [PY, SCENARIOS, "checkpointed", json.dumps(params)]
    # Layout 1: 2 hosts x 2 ranks, master on a. Killed once the checkpoint shows progress.
    first = kill_after_progress(cluster.start([("a", 2), ("b", 2)], program), ckpt, (0, 0))
    # Layout 2: 3 ranks, master on b, workers on b and c, policy static. Killed again in a later phase.
    static = [PY, SCENARIOS, "checkpointed", json.dumps(dict(params, policy="static"))]
    second = kill_after_progress(cluster.start([("b", 2), ("c", 1)], static), ckpt, max(first, (1, 0)))
    assert second > first and second[0] >= 1
    print(f"checkpoint progress (calls complete, tasks finished in the open call): killed at {first}, then {second}")
    # Layout 3: 1 host x 3 ranks (c), finishes.
    run = finish(cluster.start([("c", 3)], program), timeout=90)
    reps = by_rank(run)
    assert {k: reps[0][k] for k in RESULT_KEYS} == checkpointed_reference, (first, second)
    _, calls = read_checkpoint(ckpt)
    assert len(calls) == 3 and all(c.complete for c in calls)
