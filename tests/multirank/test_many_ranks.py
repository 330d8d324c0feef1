"""32 and 64 ranks oversubscribed on this machine, with one master and with groups forced small
(4 workers per group master): exact counts, bitwise reductions, kill and resume, a lost worker
under ULFM. Slow (tens of seconds each on 2 cores): only with HPCMICRO_SLOW=1, as CI sets.

Everything runs under a timeout; a failure on one rank ends the job (tests/mpirun.py).
"""

import math
import os
import time

import pytest

from hpcmicro.engine.group import plan_groups
from hpcmicro.kernels import uts
from tests.faults.test_lost_worker import needs_ulfm
from tests.faults.test_restart import LONG, reference, start
from tests.multirank.test_groups import lose_a_member_under_ulfm
from tests.mpirun import finish, kill_job, run_scenario

pytestmark = pytest.mark.skipif(os.environ.get("HPCMICRO_SLOW") != "1",
                                reason="slow (32-64 oversubscribed ranks); set HPCMICRO_SLOW=1 to run")

RANKS = [32, 64]
GROUPS = {"HPCMICRO_GROUP_SIZE": "4"}  # 32 ranks: 6 groups of 4 and one of 6; 64: 12 of 4 and one of 3


def reports(run, n):
    assert run.returncode == 0, str(run)
    reps = {r["rank"]: r for r in run.reports()}
    assert sorted(reps) == list(range(n)), str(run)
    return reps


@pytest.mark.parametrize("env", [None, GROUPS], ids=["one-master", "groups"])
@pytest.mark.parametrize("n", RANKS)
def test_uts_count_is_exact_and_spread_over_many_workers(n, env):
    rep = run_scenario(n, "tree_search", timeout=400, env=env, preset="SMALL_BIN", policy="steal").report()
    assert rep["count"] == rep["serial"] == uts.serial_count(uts.SMALL_BIN)
    assert rep["steals"] > 0
    # One root: only steals spread it. On 2 cores most of the workers start after the tree is gone.
    assert sum(1 for t in rep["per_worker"] if t) > 1, rep["per_worker"]
    workers = n - 1 if env is None else sum(len(m) for _, m in plan_groups(n, 4))
    assert len(rep["per_worker"]) == workers


def test_reductions_are_bitwise_those_of_8_ranks():
    def values(n, env=None):
        reps = reports(run_scenario(n, "fp_reduce", timeout=400, env=env, policy="steal", n=3000), n)
        got = {(r["total"], r["array"], r["amin"]) for r in reps.values()}
        assert len(got) == 1, f"ranks of one run disagree: {got}"
        rep = reps[0]
        assert math.isclose(float.fromhex(rep["total"]), rep["fsum"], rel_tol=1e-9)
        return got.pop()

    reference_8 = values(8)
    for n in RANKS:
        assert values(n) == reference_8, n
        assert values(n, GROUPS) == reference_8, (n, "groups")


@pytest.mark.parametrize("env", [None, GROUPS], ids=["one-master", "groups"])
def test_killed_at_64_ranks_resumes_exactly_at_32(tmp_path, env):
    clean = reference(LONG)
    params = dict(LONG, checkpoint=str(tmp_path / "run.h5"), policy="steal")
    proc = start(64, params, env=env)
    deadline = time.monotonic() + 300
    while not (tmp_path / "run.h5").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # kill once the first checkpoint is on disk
    assert proc.poll() is None, "the 64-rank run ended before it could be killed"
    assert (tmp_path / "run.h5").exists(), "no checkpoint within 300 s"
    time.sleep(0.5)
    kill_job(proc.pid)
    proc.communicate()
    run = finish(start(32, params, env=env), timeout=400)
    assert run.returncode == 0, str(run)
    rep = run.report()
    assert {k: rep[k] for k in clean} == clean


@needs_ulfm
def test_ulfm_a_member_lost_at_32_ranks_in_groups(tmp_path):
    # The last member of the fourth group: every rank above it is renumbered after the shrink, so
    # former group masters become members (they must get a device then).
    victim = plan_groups(32, 4)[3][1][-1]
    lose_a_member_under_ulfm(tmp_path, 32, 4, victim, timeout=280, after=60)
