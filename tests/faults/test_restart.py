"""Kill runs at random moments, resume them, and get bitwise the uninterrupted result."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.mpirun import MPI_ENV, ROOT, SCENARIOS, finish, kill_job, mpiexec, run_command

PARAMS = {"n": 300, "roots": 40, "every": 0.05}


LONG = dict(PARAMS, n=2000)  # phase 1 alone takes seconds: room to interrupt it


def reference(params):
    """The uninterrupted run, on one rank without checkpoints."""
    run = run_command([sys.executable, str(SCENARIOS), "checkpointed", json.dumps(params)], timeout=180)
    rep = run.report()
    return {k: rep[k] for k in ("phase1", "phase2", "n2", "tree")}


@pytest.fixture(scope="module")
def clean_result():
    return reference(PARAMS)


@pytest.fixture(scope="module")
def clean_long():
    return reference(LONG)


def start(ranks, params, env=None):
    env = dict(os.environ, **MPI_ENV, PYTHONPATH=str(ROOT), **(env or {}))
    argv = [mpiexec(), "-n", str(ranks), sys.executable, str(SCENARIOS), "checkpointed", json.dumps(params)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT, start_new_session=True)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_random_moments_then_resume_is_exact(tmp_path, clean_result, seed):
    rng = random.Random(seed)
    params = dict(PARAMS, checkpoint=str(tmp_path / "run.h5"))
    kills = 0
    for attempt in range(8):
        ranks, policy = rng.choice([2, 3, 4]), rng.choice(["steal", "static"])
        proc = start(ranks, dict(params, policy=policy))
        if attempt < 3:  # kill the whole job (every rank) at a random moment
            time.sleep(rng.uniform(0.3, 2.5))
            if proc.poll() is None:
                kill_job(proc.pid)  # every rank at once: no rank gets to write a last checkpoint
                proc.communicate()
                kills += 1
                continue
        run = finish(proc, timeout=120)
        assert run.returncode == 0, str(run)
        rep = run.report()
        assert {k: rep[k] for k in clean_result} == clean_result
        break
    else:
        raise AssertionError("never completed")
    assert kills >= 1  # the test is only meaningful if something was killed


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_preemption_signal_on_one_rank_checkpoints_exits_75_and_resumes(tmp_path, clean_long, sig):
    clean_result = clean_long
    params = dict(LONG, checkpoint=str(tmp_path / "run.h5"), pid_dir=str(tmp_path), every=30)
    proc = start(4, params)
    pid_file = tmp_path / "rank2.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and proc.poll() is None, "the job never started"
        time.sleep(0.05)
    time.sleep(0.5)  # in the middle of phase 1
    os.kill(int(pid_file.read_text()), sig)  # one worker only
    run = finish(proc, timeout=60)
    assert run.returncode == 75, str(run)
    assert f"preempted by {sig.name}" in run.stderr or f"preempted by {sig.name}" in run.stdout, str(run)
    assert (tmp_path / "run.h5").exists()
    from hpcmicro.io.checkpoint import read_checkpoint

    _, calls = read_checkpoint(tmp_path / "run.h5")
    assert calls and not calls[-1].complete  # stopped in the middle: a partial call was saved
    # Resume with another rank count and policy.
    run = finish(start(3, dict(params, policy="static", pid_dir=None)), timeout=120)
    assert run.returncode == 0, str(run)
    rep = run.report()
    assert {k: rep[k] for k in clean_result} == clean_result
