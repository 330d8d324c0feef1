"""jobs/cholesky.py: a DAG of futures gives numpy's Cholesky factor, under mpiexec and in one process."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from tests.mpirun import ROOT, mpiexec, run_command

JOB = ROOT / "jobs" / "cholesky.py"


@pytest.mark.parametrize("launch", ["mpi4", "inprocess"])
def test_tiled_cholesky_matches_numpy(launch, tmp_path):
    n, tile, seed = 384, 48, 7
    out = tmp_path / "L.npy"
    args = [str(JOB), "--n", str(n), "--tile", str(tile), "--seed", str(seed), "--out", str(out)]
    argv = [sys.executable, *args] if launch == "inprocess" else \
        [mpiexec(), "-n", "4", sys.executable, "-m", "hpcmicro.futures", *args]
    job = run_command(argv, timeout=180)
    assert job.returncode == 0, str(job)
    report = json.loads(next(line for line in job.stdout.splitlines() if line.startswith("{")))
    t = n // tile
    assert report["tasks"] == t + t * (t - 1) // 2 + (t ** 3 - t) // 6  # potrf, trsm, syrk/gemm counts
    rng = np.random.default_rng(seed)  # the job's matrix, built here independently
    m = rng.standard_normal((n, n))
    a = m @ m.T + n * np.eye(n)
    lower = np.load(out)
    np.testing.assert_allclose(lower, np.linalg.cholesky(a), rtol=0, atol=1e-10 * np.abs(a).max())
    np.testing.assert_allclose(lower @ lower.T, a, rtol=1e-12, atol=1e-9)


def test_the_job_refuses_a_tile_that_does_not_divide_n():
    job = run_command([sys.executable, str(JOB), "--n", "100", "--tile", "30"], timeout=60)
    assert job.returncode == 2 and "multiple of --tile" in job.stderr
