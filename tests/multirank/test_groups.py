"""Two-level scheduling (engine/group.py) under mpiexec: group master ranks between the master and the workers.

Groups are forced small (``HPCMICRO_GROUP_SIZE``: 2 or 3 workers per group master) so that a few
oversubscribed ranks have several groups; one master is the default at this size. Each test checks
against an independent reference: a serial count, the one-master run's bits, a run with nobody killed.
"""

import math
import os
import signal
import time

import pytest

from hpcmicro.engine.group import plan_groups
from hpcmicro.kernels import uts
from tests.faults.test_lost_worker import _mpirun_ulfm, needs_ulfm
from tests.faults.test_restart import LONG, reference, start
from tests.mpirun import finish, kill_job, run_scenario

# (ranks, workers per group): 7 ranks = master + 2 groups of (group master + 2); 9 = master + 2 x (1 + 3).
LAYOUTS = [(7, 2), (9, 3)]


def grouped(size):
    return {"HPCMICRO_GROUP_SIZE": str(size)}


def n_workers(ranks, size):
    return sum(len(m) for _, m in plan_groups(ranks, size))


@pytest.fixture(scope="module")
def long_reference():
    return reference(LONG)


@pytest.mark.parametrize("ranks,size", LAYOUTS)
def test_uts_count_is_exact_and_stolen_across_groups(ranks, size):
    rep = run_scenario(ranks, "tree_search", timeout=120, env=grouped(size), preset="SMALL_BIN",
                       policy="steal").report()
    assert rep["count"] == rep["serial"] == uts.serial_count(uts.SMALL_BIN)
    # Only workers run tasks: the group masters are not among them.
    assert len(rep["per_worker"]) == n_workers(ranks, size) < ranks - 1
    assert rep["steals"] > 0  # one root: the second group gets work only by a steal between groups
    assert sum(rep["per_worker"]) == rep["count"]


def _fp_values(ranks, env=None):
    run = run_scenario(ranks, "fp_reduce", timeout=120, env=env, policy="steal", n=3000)
    assert run.returncode == 0, str(run)
    reps = {r["rank"]: r for r in run.reports()}
    assert sorted(reps) == list(range(ranks)), str(run)
    got = {(r["total"], r["array"], r["amin"]) for r in reps.values()}
    assert len(got) == 1, f"ranks of one run disagree: {got}"
    assert math.isclose(float.fromhex(reps[0]["total"]), reps[0]["fsum"], rel_tol=1e-9)
    return got.pop()


def test_reductions_under_groups_are_bitwise_those_of_one_master():
    one_master = _fp_values(4)
    for ranks, size in LAYOUTS:
        assert _fp_values(ranks, grouped(size)) == one_master, (ranks, size)


@pytest.mark.parametrize("policy", ["steal", "static"])
def test_results_equal_serial_under_groups(policy):
    run = run_scenario(7, "serial_equal", timeout=120, env=grouped(2), policy=policy)
    assert run.returncode == 0, str(run)
    reps = run.reports()
    assert sorted(r["rank"] for r in reps) == list(range(7))
    for rep in reps:
        assert all(rep["ok"].values()), (rep["rank"], rep["ok"])
    # Only the members took a device (a backend): the master and the group masters run no task.
    assert {r["rank"] for r in reps if r["backend"]} == {r for _, m in plan_groups(7, 2) for r in m}


def test_a_kernel_error_under_groups_is_a_task_error_on_every_rank():
    run = run_scenario(7, "kernel_error", timeout=60, env=grouped(2), policy="steal", bad=37, n=100)
    assert run.returncode == 0, str(run)
    raised = [r for r in run.reports() if "raised" in r]
    assert sorted(r["rank"] for r in raised) == list(range(7)), str(run)
    for rep in raised:
        assert rep["raised"] == "TaskError" and rep["task_id"] == [37], rep
    # The runtime goes on: the next call (on the same groups) has its exact value on every rank.
    assert [r["after"] for r in run.reports() if "after" in r] == [sum(i * i for i in range(100))] * 7


def test_a_hung_task_in_a_group_is_handed_to_another_member(tmp_path):
    run = run_scenario(7, "hung_task", timeout=90, env=grouped(2), policy="steal", marker_dir=str(tmp_path),
                       hang=6.0, task_timeout=0.5)
    assert run.returncode == 0, str(run)
    assert (tmp_path / "hung").exists()
    for rep in run.reports():
        assert rep["total"] == rep["check"] and rep["map_ok"]
        assert sum(rep["hung"]) == 1 and rep["tasks_run"] == 40
    assert {r["rank"]: r for r in run.reports()}[0]["wall"] < 3.0  # it did not wait for the hung kernel


def test_killed_under_groups_resumes_exactly_on_other_layouts(tmp_path, long_reference):
    params = dict(LONG, checkpoint=str(tmp_path / "run.h5"), policy="steal")
    proc = start(7, params, env=grouped(2))
    deadline = time.monotonic() + 120
    while not (tmp_path / "run.h5").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # kill once the first checkpoint is on disk
    assert proc.poll() is None, "the run ended before it could be killed"
    time.sleep(0.3)
    kill_job(proc.pid)
    proc.communicate()
    from hpcmicro.io.checkpoint import read_checkpoint

    _, calls = read_checkpoint(tmp_path / "run.h5")
    assert calls and not calls[-1].complete  # killed in the middle: the resume has something to do
    run = finish(start(9, params, env=grouped(3)), timeout=180)
    assert run.returncode == 0, str(run)
    rep = run.report()
    assert {k: rep[k] for k in long_reference} == long_reference


def test_preempting_one_member_checkpoints_exits_75_and_resumes_on_one_master(tmp_path, long_reference):
    params = dict(LONG, checkpoint=str(tmp_path / "run.h5"), pid_dir=str(tmp_path), every=30)
    proc = start(7, params, env=grouped(2))
    member = max(r for _, m in plan_groups(7, 2) for r in m)
    pid_file = tmp_path / f"rank{member}.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and proc.poll() is None, "the job never started"
        time.sleep(0.05)
    time.sleep(0.5)  # in the middle of phase 1
    os.kill(int(pid_file.read_text()), signal.SIGTERM)  # one member only: its group master passes it up
    run = finish(proc, timeout=60)
    assert run.returncode == 75, str(run)
    assert "preempted by SIGTERM" in run.stderr + run.stdout
    from hpcmicro.io.checkpoint import read_checkpoint

    _, calls = read_checkpoint(tmp_path / "run.h5")
    assert calls and not calls[-1].complete
    run = finish(start(3, dict(params, pid_dir=None)), timeout=120)
    assert run.returncode == 0, str(run)
    rep = run.report()
    assert {k: rep[k] for k in long_reference} == long_reference


def lose_a_member_under_ulfm(tmp_path, ranks, size, victim, timeout=120, **params):
    """Kill member ``victim`` of a grouped run under ULFM; check the survivors' result is that of a run
    where nobody dies, and that every survivor planned the groups again on its new ranks."""
    layout = plan_groups(ranks, size)
    assert any(victim in members for _, members in layout), "the victim must be a member, not a group master"
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    (ref_dir / "died").touch()  # nobody dies: the reference
    ref = _mpirun_ulfm(4, "lose_worker", {"marker_dir": str(ref_dir), "victim": 1}).report()
    run = _mpirun_ulfm(ranks, "lose_worker", {"marker_dir": str(tmp_path), "victim": victim, **params},
                       env=grouped(size), timeout=timeout)
    assert (tmp_path / "died").exists(), "the victim never died: the test proves nothing\n" + str(run)
    reps = {r["rank"]: r for r in run.reports()}
    assert sorted(reps) == list(range(ranks - 1)), str(run)  # the survivors, renumbered
    for rep in reps.values():
        assert rep["ulfm"] and rep["size_before"] == ranks and rep["size_after"] == ranks - 1
        assert rep["layout_before"] == [[g, m] for g, m in layout]
        assert rep["layout_after"] == [[g, m] for g, m in plan_groups(ranks - 1, size)]
        assert (rep["total"], rep["listed"]) == (ref["total"], ref["listed"])
    assert f"lost rank(s) [{victim}]" in run.stderr


@needs_ulfm
def test_ulfm_a_member_dies_and_the_groups_are_rebuilt_on_the_survivors(tmp_path):
    # 7 ranks, groups of 2: group masters 1 and 4; rank 6 is the second group's last member.
    assert plan_groups(6, 2) == [(1, [2, 3]), (4, [5])]
    lose_a_member_under_ulfm(tmp_path, 7, 2, victim=6)
