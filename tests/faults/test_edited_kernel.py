"""A checkpoint is never resumed by edited code: a preempted run whose kernel (or a global it reads)
is edited before the rerun is refused with a message naming the change, on every rank, never mixed.

Each test writes a small user module and job script into tmp_path, runs it under mpiexec, preempts
it from inside a kernel (SIGTERM to the worker running a chosen task), edits the module and reruns.
"""

import json
import sys

import pytest

from tests.mpirun import mpiexec, run_command

N, CHUNK, PREEMPT_AT = 2000, 10, 1200

KERNEL = '''
import os, signal, time
SCALE = {scale}
{padding}
def kern(r):
    time.sleep(0.001)
    if int(os.environ.get("PREEMPT_AT", -1)) in r:
        os.kill(os.getpid(), signal.SIGTERM)  # preempt the run from the worker holding this task
    return sum(x * {factor} * SCALE for x in r)
'''

JOB = '''
import json, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hpcmicro as hm
import userkern
with hm.Runtime(checkpoint=sys.argv[1], checkpoint_every=0.05) as rt:
    first = rt.map_reduce(userkern.kern, hm.Range({n}, {chunk}))
    with open(os.path.join(os.path.dirname(sys.argv[1]), f"out.{{rt.rank}}.json"), "w") as out:
        json.dump({{"rank": rt.rank, "total": int(first), "restored": rt.stats.restored}}, out)
'''


def write_job(folder, scale=1, factor=1, padding=""):
    (folder / "userkern.py").write_text(KERNEL.format(scale=scale, factor=factor, padding=padding))
    (folder / "job.py").write_text(JOB.format(n=N, chunk=CHUNK))
    for cached in (folder / "__pycache__").glob("*.pyc"):  # mtime granularity must not serve the old code
        cached.unlink()


def run_job(folder, ranks, preempt=False):
    for old in folder.glob("out.*.json"):
        old.unlink()
    argv = [mpiexec(), "-n", str(ranks), sys.executable, str(folder / "job.py"), str(folder / "run.h5")]
    return run_command(argv, timeout=120, env={"PREEMPT_AT": str(PREEMPT_AT) if preempt else "-1"})


def totals(folder):
    """What each rank returned, from its own file (ranks' stdout interleaves)."""
    return [json.loads(p.read_text()) for p in sorted(folder.glob("out.*.json"))]


def serial(scale=1, factor=1):
    return sum(x * factor * scale for x in range(N))


def preempted(folder, ranks):
    run = run_job(folder, ranks, preempt=True)
    assert run.returncode == 75, str(run)
    assert (folder / "run.h5").exists()
    return run


@pytest.mark.parametrize("ranks", [1, 3])
def test_unchanged_code_resumes_exactly(tmp_path, ranks):
    write_job(tmp_path)
    preempted(tmp_path, ranks)
    write_job(tmp_path, padding="\n# a comment and blank lines move kern down: not a change\n\n")
    run = run_job(tmp_path, ranks)
    assert run.returncode == 0, str(run)
    reports = totals(tmp_path)
    assert len(reports) == ranks and {r["total"] for r in reports} == {serial()}


@pytest.mark.parametrize("ranks", [1, 3])
@pytest.mark.parametrize("edit, changed", [
    (dict(factor=2), "kernel: code of userkern.kern changed"),
    (dict(scale=2), "kernel: global userkern.SCALE changed"),
])
def test_edited_kernel_after_preemption_is_refused_on_every_rank(tmp_path, ranks, edit, changed):
    write_job(tmp_path)
    preempted(tmp_path, ranks)
    write_job(tmp_path, **edit)
    run = run_job(tmp_path, ranks)
    assert run.returncode != 0 and not totals(tmp_path), str(run)  # no rank returned a mixed total
    assert "CheckpointError" in run.stderr and changed in run.stderr, str(run)
    assert "resume=False" in run.stderr  # and how to start afresh
    assert run.stderr.count(changed) >= ranks  # raised on every rank, none left waiting


def test_complete_call_is_not_replayed_for_edited_code(tmp_path):
    write_job(tmp_path)
    run = run_job(tmp_path, 3)
    assert run.returncode == 0 and {r["total"] for r in totals(tmp_path)} == {serial()}, str(run)
    run = run_job(tmp_path, 3)  # the same code: the stored result is replayed
    assert run.returncode == 0 and all(r["restored"] for r in totals(tmp_path)), str(run)
    write_job(tmp_path, factor=2)
    run = run_job(tmp_path, 3)
    assert run.returncode != 0 and "kernel: code of userkern.kern changed" in run.stderr, str(run)
