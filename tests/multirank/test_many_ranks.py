"""32 and 64 ranks oversubscribed on this machine (one master): exact counts, bitwise reductions,
kill and resume. Slow (tens of seconds each on 2 cores): only with HPCMICRO_SLOW=1, as CI sets.

Everything runs under a timeout; a failure on one rank ends the job (tests/mpirun.py). Two-level
scheduling is not wired into the MPI driver yet (docs/scale.md), so these check the one-level
master past the 16 ranks the other tests use.
"""

import math
import os
import time

import pytest

from hpcmicro.kernels import uts
from tests.faults.test_restart import LONG, reference, start
from tests.mpirun import finish, kill_job, run_scenario

pytestmark = pytest.mark.skipif(os.environ.get("HPCMICRO_SLOW") != "1",
                                reason="slow (32-64 oversubscribed ranks); set HPCMICRO_SLOW=1 to run")

RANKS = [32, 64]


def reports(run, n):
    assert run.returncode == 0, str(run)
    reps = {r["rank"]: r for r in run.reports()}
    assert sorted(reps) == list(range(n)), str(run)
    return reps


@pytest.mark.parametrize("n", RANKS)
def test_uts_count_is_exact_and_spread_over_many_workers(n):
    rep = run_scenario(n, "tree_search", timeout=400, preset="SMALL_BIN", policy="steal").report()
    assert rep["count"] == rep["serial"] == uts.serial_count(uts.SMALL_BIN)
    assert rep["steals"] > 0
    # One root: only steals spread it. On 2 cores most of the 31-63 workers start after the tree is gone.
    assert sum(1 for t in rep["per_worker"] if t) > 1, rep["per_worker"]
    assert len(rep["per_worker"]) == n - 1


def test_reductions_are_bitwise_those_of_8_ranks():
    def values(n):
        reps = reports(run_scenario(n, "fp_reduce", timeout=400, policy="steal", n=3000), n)
        got = {(r["total"], r["array"], r["amin"]) for r in reps.values()}
        assert len(got) == 1, f"ranks of one run disagree: {got}"
        rep = reps[0]
        assert math.isclose(float.fromhex(rep["total"]), rep["fsum"], rel_tol=1e-9)
        return got.pop()

    reference_8 = values(8)
    for n in RANKS:
        assert values(n) == reference_8, n


def test_killed_at_64_ranks_resumes_exactly_at_32(tmp_path):
    clean = reference(LONG)
    params = dict(LONG, checkpoint=str(tmp_path / "run.h5"), policy="steal")
    proc = start(64, params)
    deadline = time.monotonic() + 300
    while not (tmp_path / "run.h5").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # kill once the first checkpoint is on disk
    assert proc.poll() is None, "the 64-rank run ended before it could be killed"
    assert (tmp_path / "run.h5").exists(), "no checkpoint within 300 s"
    time.sleep(0.5)
    kill_job(proc.pid)
    proc.communicate()
    run = finish(start(32, params), timeout=400)
    assert run.returncode == 0, str(run)
    rep = run.report()
    assert {k: rep[k] for k in clean} == clean
