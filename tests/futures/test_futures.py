"""hpcmicro.futures under mpiexec (``python -m hpcmicro.futures``), with MPICommExecutor, and in one process.

Each program (programs.py) runs in its own job under a timeout; what rank 0
saw is compared with the same computation done here, serially.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.mpirun import mpiexec, run_command

PROGRAMS = Path(__file__).resolve().parent / "programs.py"
MODES = ["mpi3", "inprocess"]


def run(mode: str, name: str, ranks: int = 3, timeout: float = 120) -> dict:
    if mode == "inprocess":
        argv = [sys.executable, str(PROGRAMS), name]
    else:
        argv = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "hpcmicro.futures", str(PROGRAMS), name]
    job = run_command(argv, timeout=timeout)
    assert job.returncode == 0, str(job)
    return job.report()


@pytest.mark.parametrize("mode", MODES)
def test_submit_map_and_waiting_match_serial(mode):
    r = run(mode, "basic")
    assert r["loop"] == [i * i for i in range(500)]
    assert r["mapped"] == [i * i for i in range(200)]
    assert r["chunked"] == [2 * i for i in range(100)]
    assert sorted(r["unordered"]) == [i * i for i in range(50)]
    assert r["star"] == [i + 1 for i in range(30)]
    assert r["as_completed"] == 40
    assert r["first_done"] == 1  # the 2 s nap is not done when the first returns
    assert (r["all_done"], r["all_not_done"]) == (10, 0)
    assert r["workers"] == 2


@pytest.mark.parametrize("mode", MODES)
def test_errors_reach_their_futures_with_the_remote_traceback(mode):
    r = run(mode, "errors")
    assert r["exc"] == ["ValueError", "boom on 3", "RemoteTraceback", True]
    assert r["bad_arg"] in ("PicklingError", "AttributeError")  # pickle's own error for a local lambda
    assert "cannot be pickled" in r["bad_result"] and "lock" in r["bad_result"]
    assert r["timeout"] == "TimeoutError"
    assert "needs a callable" in r["not_callable"]
    assert r["after_errors"] == 81
    assert "after shutdown" in r["after_shutdown"]


@pytest.mark.parametrize("mode", MODES)
def test_futures_as_arguments_make_a_dag(mode):
    r = run(mode, "dag")
    a, b = 3 * 3, 4 * 4
    c = a + b
    d = a + b + c + 1
    assert (r["c"], r["d"], r["e"]) == (c, d, d + c)
    assert r["chain"] == 1 + 20
    kind, message, cause = r["dependent"]
    assert kind == "DependencyError" and cause == "ValueError"
    assert "boom#" in message and "boom on 7" in message  # names the failed input and its exception
    assert r["second"] == "DependencyError"
    assert r["cancelled"] is True and r["after_cancel"] is True  # a cancelled input cancels its dependents
    assert r["slow"] == 1.0 and r["dependency_error_is_exception"]


@pytest.mark.parametrize("mode", MODES)
def test_initializer_runs_on_workers_and_a_failing_one_breaks_the_executor(mode):
    r = run(mode, "initializer")
    assert r["greetings"] == ["hello"] * 6
    assert r["first"] == "BrokenExecutor" and r["later"] == "BrokenExecutor"


def test_tasks_are_spread_over_the_worker_ranks():
    r = run("mpi3", "balance")
    assert r["ranks"] == [1, 2] and r["pids"] == 2


@pytest.mark.parametrize("ranks", [3, 5])
def test_get_comm_workers_spans_the_workers(ranks):
    r = run("mpi", "comm_workers", ranks=ranks)
    assert r["workers"] == ranks - 1
    assert r["sums"] == [ranks - 1] * (ranks - 1)


def test_mpi_comm_executor_on_a_root_other_than_zero():
    job = run_command([mpiexec(), "-n", "4", sys.executable, str(PROGRAMS), "comm_executor"], timeout=120)
    assert job.returncode == 0, str(job)
    r = job.report()
    root = r["root"]
    seen = dict((rank, got) for rank, got in r["seen"])
    assert all(seen[k] is None for k in seen if k != root)  # None on every rank but the root
    mapped, workers, dag = seen[root]
    assert mapped == [i * i for i in range(20)] and workers == 3 and dag == [5]


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_in_a_task_preempts_the_pool_with_exit_status_75(mode):
    argv = [sys.executable, str(PROGRAMS), "preempt"] if mode == "inprocess" else \
        [mpiexec(), "-n", "3", sys.executable, "-m", "hpcmicro.futures", str(PROGRAMS), "preempt"]
    job = run_command(argv, timeout=120)
    assert job.returncode == 75, str(job)
    assert "preempted by SIGTERM" in job.stderr, str(job)
    assert '"never"' not in job.stdout  # the program did not go on as if nothing happened


@pytest.mark.parametrize("mode", MODES)
def test_a_preempted_checkpointed_run_resumes_without_computing_any_task_twice(mode, tmp_path):
    def launch():
        argv = [sys.executable, str(PROGRAMS), "checkpointed", str(tmp_path)] if mode == "inprocess" else \
            [mpiexec(), "-n", "3", sys.executable, "-m", "hpcmicro.futures", str(PROGRAMS), "checkpointed",
             str(tmp_path)]
        return run_command(argv, timeout=120)

    first = launch()
    assert first.returncode == 75, str(first)  # task 25 preempted it
    ran_first = len(list(tmp_path.glob("ran-*")))
    assert 0 < ran_first < 60
    second = launch()
    assert second.returncode == 0, str(second)
    r = second.report()
    assert r["squares"] == [i * i for i in range(60)]
    assert r["sums"] == [i * i + (i + 1) * (i + 1) for i in range(59)]
    runs = {}
    for marker in tmp_path.glob("ran-*"):
        i = int(marker.name.split("-")[1])
        runs[i] = runs.get(i, 0) + 1
    assert sorted(runs) == list(range(60))
    assert all(n == 1 for n in runs.values()), {i: n for i, n in runs.items() if n != 1}  # none ran twice
    assert list((tmp_path / "results").glob("seg-*.h5"))


@pytest.mark.parametrize("mode", MODES)
def test_retries_try_a_failing_task_again(mode, tmp_path):
    argv = [sys.executable, str(PROGRAMS), "retried", str(tmp_path)] if mode == "inprocess" else \
        [mpiexec(), "-n", "3", sys.executable, "-m", "hpcmicro.futures", str(PROGRAMS), "retried", str(tmp_path)]
    job = run_command(argv, timeout=120)
    assert job.returncode == 0, str(job)
    r = job.report()
    assert r["ok"] == [0, 1, 2, 3, 4]  # two failures each, then success on the third try
    assert r["short"] == ["OSError", "transient failure 1 of task 99"]  # one retry is not enough
    assert len(list(tmp_path.glob("try-99-*"))) == 2


def test_importing_hpcmicro_futures_does_not_initialize_mpi():
    code = "import sys, hpcmicro.futures; print('mpi4py.MPI' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


NUMPY_FREE_PROGRAM = """
import atexit, os, sys
from hpcmicro.futures import MPIPoolExecutor

def square(x):
    return x * x

HERE = os.path.dirname(os.path.abspath(__file__))


def note():  # a file per rank: ranks share one stdout, where lines can run together
    with open(os.path.join(HERE, "rank-" + os.environ.get("PMI_RANK", "?")), "w") as fh:
        fh.write(str("numpy" in sys.modules))


atexit.register(note)
if __name__ == "__main__":
    with MPIPoolExecutor() as ex:
        print("squares", sum(ex.map(square, range(50))), flush=True)
"""


def test_a_program_of_plain_python_tasks_never_loads_numpy(tmp_path):
    """Start-up is import time (issue 12's demos): NumPy (~50-100 ms a rank) loads only for arrays.
    The pool's statistics, start round and end of call must not need it, on any rank."""
    script = tmp_path / "plain.py"
    script.write_text(NUMPY_FREE_PROGRAM)
    job = run_command([mpiexec(), "-n", "3", sys.executable, "-m", "hpcmicro.futures", str(script)], timeout=120)
    assert job.returncode == 0, str(job)
    assert f"squares {sum(x * x for x in range(50))}" in job.stdout
    seen = {f.name: f.read_text() for f in tmp_path.glob("rank-*")}
    assert seen == {"rank-0": "False", "rank-1": "False", "rank-2": "False"}, (seen, job.stdout)


def test_the_launcher_explains_its_usage():
    out = subprocess.run([sys.executable, "-m", "hpcmicro.futures"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "usage: python -m hpcmicro.futures" in out.stderr


@pytest.mark.parametrize("ranks", [3, 4])
def test_large_results_move_worker_to_worker_and_are_freed_when_their_futures_go(ranks):
    import numpy as np

    job = run_command([mpiexec(), "-n", str(ranks), sys.executable, str(PROGRAMS), "kept_values"], timeout=120)
    assert job.returncode == 0, str(job)
    r = job.report()
    blocks = [np.random.default_rng(s).standard_normal(64 * 1024) for s in range(8)]
    assert r["pairs"] == [float(blocks[i].sum()) + float(blocks[(i + 1) % 8].sum()) for i in range(8)]
    assert r["listed"] == float(blocks[0].sum()) + float(blocks[3].sum()) + 5.0
    assert r["fetched_sum"] == float(blocks[2].sum())
    assert r["last_sum"] == float(blocks[5].sum())  # fetched at the executor's shutdown, readable after it
    assert r["kept_type"] == "RemoteValue" and r["after_free"] == 9
    workers, root = r["workers"], r["root"]
    assert len(workers) == ranks - 1
    assert sum(w["kept"] for w in workers) == 8
    # 18 inputs of dependents (8 pairs of blocks, 2 in the list), every one worker to worker or local:
    assert sum(w["served_to_workers"] + w["local"] for w in workers) == 18
    assert sum(w["served_to_root"] for w in workers) == root["fetched"] == 2  # block 2 when asked, block 5 at the end
    assert sum(w["held"] for w in workers) == 1  # only block 5's future is still alive; the others were freed
    assert sum(w["freed"] for w in workers) == 7


@pytest.mark.parametrize("mode", MODES)
def test_a_task_that_overruns_task_timeout_runs_again_on_another_worker(mode, tmp_path):
    if mode == "inprocess":
        argv = [sys.executable, str(PROGRAMS), "timed_out", str(tmp_path)]
    else:
        argv = [mpiexec(), "-n", "3", sys.executable, "-m", "hpcmicro.futures", "--task-timeout", "0.5",
                str(PROGRAMS), "timed_out", str(tmp_path), "--shared"]
    job = run_command(argv, timeout=120)
    assert job.returncode == 0, str(job)
    r = job.report()
    assert r["values"] == [i * 10 for i in range(8)]  # task 3 from its second attempt, not the hung one's -1
    assert r["seconds"] < 3.5  # not held up by the 4 s hang
    assert r["after"] == 25
    assert "task_timeout must be a number of seconds > 0" in r["bad"]
