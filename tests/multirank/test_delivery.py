"""Result delivery on real ranks (``mpiexec -n 3`` and ``-n 4``): every rank gets what rank 0 holds.

Each rank compares what it was delivered with values it computes itself from
the same seeds (tests/multirank/delivery_script.py): dtype, shape, values,
writeable flag and memory order of every array, in lists and nests.
"""

import sys
from pathlib import Path

import pytest

from tests.mpirun import mpiexec, run_command

SCRIPT = Path(__file__).resolve().parent / "delivery_script.py"
CASES = ("big", "mixed", "direct", "unpicklable", "root")


@pytest.fixture(scope="module", params=[3, 4])
def reports(request):
    """One job a rank count running every case; its reports by (case, rank)."""
    n = request.param
    run = run_command([mpiexec(), "-n", str(n), sys.executable, str(SCRIPT), ",".join(CASES)], timeout=90)
    assert run.returncode == 0, str(run)
    found = {(r["case"], r["rank"]): r for r in run.reports()}
    assert sorted(found) == sorted((c, r) for c in CASES for r in range(n)), str(run)
    return n, found


@pytest.mark.parametrize("case", ["big", "mixed", "direct"])
def test_every_rank_receives_rank_0s_values(reports, case):
    n, found = reports
    for rank in range(n):
        rep = found[(case, rank)]
        assert rep["ok"], (rank, rep["problems"])


def test_a_value_rank_0_cannot_pickle_raises_on_every_rank(reports):
    n, found = reports
    for rank in range(n):
        rep = found[("unpicklable", rank)]
        assert rep["raised"] == "PicklingError", rep
        assert "cannot be pickled" in rep["message"] and "lock" in rep["message"], rep
        assert rep["ok"], rep["problems"]  # the next call ran as usual


def test_root_int_delivers_to_that_rank_only(reports):
    n, found = reports
    for rank in range(n):
        rep = found[("root", rank)]
        assert rep["has"] is (rank == n - 1) and rep["ok"], (rank, rep)
