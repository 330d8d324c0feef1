"""An error while rank 0 opens the checkpoint reaches every rank as a CheckpointError, never a hang."""

import sys

import pytest

from tests.mpirun import mpiexec, run_command

SCRIPT = """
import json, sys
import hpcmicro as hm
import hpcmicro.runtime
from hpcmicro.io.checkpoint import CheckpointError
from mpi4py import MPI

error = {"KeyError": KeyError("calls"), "PermissionError": PermissionError(13, "Permission denied"),
         "RuntimeError": RuntimeError("boom")}[sys.argv[1]]

def broken(*args, **kwargs):
    raise error

if MPI.COMM_WORLD.rank == 0:
    hpcmicro.runtime.CheckpointSession = broken
try:
    hm.Runtime(checkpoint=sys.argv[2]).open()
    got = None
except Exception as exc:
    got = [type(exc).__name__, str(exc)]
print(json.dumps({"rank": MPI.COMM_WORLD.rank, "error": got}), flush=True)
"""


@pytest.mark.parametrize("error", ["KeyError", "PermissionError", "RuntimeError"])
def test_a_raw_error_on_rank_0_at_open_is_a_checkpoint_error_on_every_rank(tmp_path, error):
    from tests.mpirun import MPIRun

    script = tmp_path / "open.py"
    script.write_text(SCRIPT)
    path = tmp_path / "run.h5"
    run: MPIRun = run_command([mpiexec(), "-n", "2", sys.executable, str(script), error, str(path)], timeout=30)
    reports = sorted(run.reports(), key=lambda r: r["rank"])
    assert [r["rank"] for r in reports] == [0, 1], str(run)
    assert reports[0]["error"] == reports[1]["error"], str(run)
    kind, message = reports[0]["error"]
    assert kind == "CheckpointError" and str(path) in message and error in message, str(run)
