"""What a kernel's SystemExit, KeyboardInterrupt or other BaseException means, and what Ctrl-C does.

A kernel's exception of any kind is that task's failure (a TaskError, like any
error: retries and on_error apply), never an exit of the job. Ctrl-C (SIGINT)
is taken like SIGTERM: a final checkpoint, then hm.Preempted with exit status 130.
"""

import sys
import textwrap

import pytest

import hpcmicro as hm
from tests.mpirun import run_command


class Custom(BaseException):
    pass


def exits(x):
    if x == 3:
        sys.exit(3)
    return x


def interrupts(x):
    if x == 2:
        raise KeyboardInterrupt
    return x


def custom(x):
    if x == 1:
        raise Custom("not an Exception")
    return x


@pytest.mark.parametrize("kernel,task,name", [(exits, 3, "SystemExit"), (interrupts, 2, "KeyboardInterrupt"),
                                              (custom, 1, "Custom")])
def test_a_kernels_base_exception_is_a_task_error(kernel, task, name):
    with hm.Runtime() as rt:
        with pytest.raises(hm.TaskError) as info:
            rt.map(kernel, list(range(6)))
        assert info.value.task_id == (task,) and info.value.exc_type == name
        assert rt.map(abs, [-1]) == [1]  # and the runtime goes on


def test_skip_applies_to_a_system_exit_too():
    with hm.Runtime(on_error="skip") as rt:
        assert rt.map(exits, list(range(5))) == [0, 1, 2, None, 4]


SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import hpcmicro as hm

    path = sys.argv[1]

    def square(i):  # the switch is in the environment: a global read by the kernel is part of its identity
        if os.environ.get("INTERRUPT") == "1" and i == 300:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while a kernel runs
        return i * i

    with hm.Runtime(checkpoint=path, checkpoint_every=3600) as rt:
        out = rt.map(square, list(range(1000)))
        print(json.dumps({"rank": 0, "ok": out == [i * i for i in range(1000)], "restored": rt.stats.tasks}))
""")


def test_ctrl_c_checkpoints_and_exits_130_then_resumes_exactly(tmp_path):
    script, ck = tmp_path / "ctrl_c.py", tmp_path / "run.h5"
    script.write_text(SCRIPT)
    first = run_command([sys.executable, str(script), str(ck)], timeout=60, env={"INTERRUPT": "1"})
    assert first.returncode == 130, str(first)
    assert "preempted by SIGINT" in first.stderr and "Traceback" not in first.stderr
    assert ck.exists()
    again = run_command([sys.executable, str(script), str(ck)], timeout=60, env={"INTERRUPT": "0"})
    rep = again.report()
    assert rep["ok"] and 0 < rep["restored"] < 1000  # only the rest ran
