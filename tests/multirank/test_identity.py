"""Across ranks: callable ops agree by name, and a too-low MPI thread level is refused.

Each test runs its own mpiexec under a timeout (tests/mpirun.py).
"""

import functools
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.mpirun import mpiexec, run_command

SCRIPT = Path(__file__).resolve().parent / "identity_scenarios.py"
N, M = 200, 1_000_003


def run(ranks, name, timeout=90, **params):
    return run_command([mpiexec(), "-n", str(ranks), sys.executable, str(SCRIPT), name, json.dumps(params)],
                       timeout=timeout)


def by_rank(run_, n):
    reports = {r["rank"]: r for r in run_.reports()}
    assert sorted(reports) == list(range(n)), run_
    return reports


def serial(op):
    """The fold computed here, independently of hpcmicro (the ops are associative)."""
    weights = np.arange(5000) % 97
    values = [int(weights[i % len(weights)]) * (i + 1) for i in range(N)]
    return functools.reduce(op, values)


@pytest.mark.parametrize("op", ["partial", "instance"])
def test_callable_op_without_qualname_agrees_across_ranks(op):
    expected = serial((lambda a, b: (a + b) % M) if op == "partial" else (lambda a, b: (a * b) % M))
    r = run(3, "partial_op", n=N, m=M, op=op)
    assert r.returncode == 0, r
    reports = by_rank(r, 3)
    for rank, rep in reports.items():
        assert "error" not in rep, f"rank {rank}: {rep['error']}"
        assert rep["value"] == expected, (rank, rep)


def test_mpi_thread_single_is_refused_on_every_rank():
    r = run(3, "thread_single", timeout=60)
    assert r.returncode == 0, r  # every rank caught the error: nobody hung or aborted
    reports = by_rank(r, 3)
    for rank, rep in reports.items():
        assert rep["error"] is not None, f"rank {rank} opened a Runtime at thread level {rep['level']}"
        assert "MPI_THREAD_SINGLE" in rep["error"] and "MPI_THREAD_SERIALIZED" in rep["error"], rep
        assert "mpi4py.rc.thread_level" in rep["error"], rep
