"""Preemption signals: a honoured request ends with its Runtime, an unseen one carries over.

The Runtime scenarios run in a fresh plain-python process each (one rank, no
mpiexec) under a timeout: they signal themselves.
"""

import os
import signal
import sys
import textwrap

from hpcmicro.mpi import signals
from tests.mpirun import run_command

N = 300

SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import hpcmicro as hm

    N, path, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    armed = True

    def square(i):
        if armed and i == 100:  # Slurm's SIGTERM, arriving while a kernel runs
            os.kill(os.getpid(), signal.SIGTERM)
        return i * i

    out = {"rank": 0}
    if mode == "honoured":
        try:
            with hm.Runtime(checkpoint=path, checkpoint_every=3600) as rt:
                rt.map(square, list(range(N)))
            out["first"] = "completed"
        except hm.Preempted as exc:
            out["first"] = f"preempted by {signal.Signals(exc.signum).name}"
        armed = False
        with hm.Runtime(checkpoint=path, resume=False) as rt:  # the job again, from scratch
            out["second"] = rt.map(square, list(range(N)))
            out["tasks"] = rt.stats.tasks
    else:  # "unseen": the signal comes after the first Runtime's last look
        with hm.Runtime() as rt:
            rt.map(square, [1, 2])
            os.kill(os.getpid(), signal.SIGTERM)
        try:
            with hm.Runtime() as rt:
                rt.map(square, [3, 4] * 100)
            out["second"] = "completed"
        except hm.Preempted as exc:
            out["second"] = f"preempted by {signal.Signals(exc.signum).name}"
        with hm.Runtime() as rt:  # that request was honoured: the next Runtime runs
            out["third"] = rt.map(square, [5, 6])
    print(json.dumps(out), flush=True)
""")


def run_script(tmp_path, mode):
    script = tmp_path / "preempt_twice.py"
    script.write_text(SCRIPT)
    run = run_command([sys.executable, str(script), str(N), str(tmp_path / "run.h5"), mode], timeout=120)
    assert run.returncode == 0, run
    return run.report()


def test_second_runtime_after_a_preemption_runs_to_completion(tmp_path):
    rep = run_script(tmp_path, "honoured")
    assert rep["first"] == "preempted by SIGTERM"
    assert rep["second"] == [i * i for i in range(N)]
    assert rep["tasks"] == N  # it ran them all, not replayed a checkpoint


def test_signal_after_the_last_check_preempts_the_next_runtime(tmp_path):
    rep = run_script(tmp_path, "unseen")
    assert rep["second"] == "preempted by SIGTERM"
    assert rep["third"] == [25, 36]


def test_handlers_record_and_restore():
    previous = signal.getsignal(signal.SIGUSR1)
    signals.install()
    try:
        assert signal.getsignal(signal.SIGUSR1) is not previous
        os.kill(os.getpid(), signal.SIGUSR1)  # the handler runs before kill returns (main thread)
        assert signals.requested() == signal.SIGUSR1
    finally:
        signals.uninstall()
    assert signal.getsignal(signal.SIGUSR1) is previous
    assert signals.requested() == 0  # it was read, so it was acted on: done with
