"""The batch scripts and ``hpcmicro submit`` without a cluster: rendering, bash logic, options.

The preemptible script's requeue logic runs here under plain bash, with stand-ins for
``srun`` (runs the command) and ``scontrol`` (records the call and ends the script the
way Slurm does on a requeue).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from hpcmicro.app import slurm
from hpcmicro.app.submit import main as submit_main
from hpcmicro.constants import EXIT_PREEMPTED, MPICH_ENV
from tests.slurm.slurmjobs import LOCAL_CLUSTER, ROOT, SLURM_DIR

PI = ROOT / "jobs" / "pi.toml"


# -- the examples in slurm/ ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(slurm.EXAMPLES))
def test_examples_are_rendered_from_the_template(name):
    path = SLURM_DIR / name
    assert path.read_text() == slurm.example(name), (
        f"{path} differs from the template in hpcmicro/slurm.py; rewrite it with "
        f"`python -m hpcmicro.app.slurm slurm/` (or change EXAMPLES)")
    assert os.access(path, os.X_OK)


@pytest.mark.parametrize("path", sorted(SLURM_DIR.glob("*.sbatch")) + [LOCAL_CLUSTER], ids=lambda p: p.name)
def test_scripts_parse(path):
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_preemptible_example_asks_for_the_signal_and_requeue():
    text = (SLURM_DIR / "preemptible.sbatch").read_text()
    for line in ("#SBATCH --signal=B:USR1@120", "#SBATCH --requeue", "#SBATCH --open-mode=append"):
        assert line in text.splitlines()
    assert "scontrol requeue" in text


def test_examples_show_the_mpich_settings_to_export():
    line = "# export " + " ".join(f"{name}={value}" for name, value in MPICH_ENV.items())
    for name in slurm.EXAMPLES:
        assert line in slurm.example(name).splitlines(), name


def test_local_cluster_script_usage():
    done = subprocess.run(["bash", str(LOCAL_CLUSTER), "bogus"], capture_output=True, text=True)
    assert done.returncode == 2 and "usage" in done.stderr


@pytest.mark.parametrize("visible, local_id, expected", [
    ("3,5,7", 0, "3"), ("3,5,7", 1, "5"), ("3,5,7", 2, "7"), ("3,5,7", 4, "5"), ("0", 3, "0"), (None, 1, ""),
])
def test_gpu_binding_shows_each_rank_its_gpu(visible, local_id, expected):
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["SLURM_LOCALID"] = str(local_id)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    done = subprocess.run(["bash", "-c", slurm.GPU_BIND, "bind-gpu", "sh", "-c", 'echo "${CUDA_VISIBLE_DEVICES-}"'],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


# -- the preemptible script's logic, under plain bash --------------------------------------

FAKE_SRUN = """#!/bin/bash
while [[ ${1:-} == -* ]]; do shift; done   # drop srun's options
exec "$@"
"""
FAKE_SCONTROL = """#!/bin/bash
echo "$*" >> "$FAKE_LOG"
[ "$1" = requeue ] && kill -TERM $PPID     # Slurm ends the batch script of a requeued job
exit 0
"""
# Stands in for `python -m hpcmicro run ...`: records its arguments; exits FAKE_STATUS,
# or waits for USR1 and exits EXIT_PREEMPTED (as hpcmicro does after its checkpoint) with FAKE_STATUS=wait.
FAKE_PYTHON = f"""#!/bin/bash
echo "run $*" >> "$FAKE_LOG"
if [ "$FAKE_STATUS" = wait ]; then
    trap 'echo "run got USR1" >> "$FAKE_LOG"; exit {EXIT_PREEMPTED}' USR1
    for _ in $(seq 200); do sleep 0.05; done
    exit 9
fi
exit "$FAKE_STATUS"
"""


@pytest.fixture
def fake_slurm(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL), ("python-stand-in", FAKE_PYTHON)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "calls.log"

    def start(status, restart_count=0, args=()):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env.update(PATH=f"{bin_dir}:{env['PATH']}", FAKE_LOG=str(log), FAKE_STATUS=str(status),
                   HPCMICRO_PYTHON=str(bin_dir / "python-stand-in"), SLURM_JOB_ID="4242",
                   SLURM_JOB_NODELIST="node1", SLURM_RESTART_COUNT=str(restart_count))
        (tmp_path / "job.ckpt.h5").write_text("checkpoint")
        return subprocess.Popen(["bash", str(SLURM_DIR / "preemptible.sbatch"), "specs/job.toml", *args],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def calls():
        return log.read_text().splitlines() if log.exists() else []

    return start, calls, tmp_path


def _finish(proc, timeout=30):
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"the script did not finish in {timeout} s:\n{out}")
    return proc.returncode, out


def test_preemptible_done_removes_checkpoint_and_does_not_requeue(fake_slurm):
    start, calls, folder = fake_slurm
    status, out = _finish(start(0, args=["--policy", "static"]))
    assert status == 0, out
    assert calls() == ["run -m hpcmicro run specs/job.toml --checkpoint job.ckpt.h5 --policy static"]
    assert not (folder / "job.ckpt.h5").exists()
    assert "hpcmicro: done" in out


@pytest.mark.parametrize("exit_status", [EXIT_PREEMPTED, 138])  # checkpointed; killed by USR1 before hpcmicro listened
def test_preemptible_requeues_a_preempted_run(fake_slurm, exit_status):
    start, calls, folder = fake_slurm
    status, out = _finish(start(exit_status))
    assert calls()[-1] == "requeue 4242", out
    assert status == 0 and "requeueing job 4242" in out
    assert (folder / "job.ckpt.h5").exists()  # the requeued job resumes from it


@pytest.mark.parametrize("failure", [1, 2, 137])  # a task raised; a bad spec; killed (not preempted)
def test_preemptible_does_not_requeue_a_failed_run(fake_slurm, failure):
    start, calls, _ = fake_slurm
    status, out = _finish(start(failure))
    assert status == failure, out
    assert not any(c.startswith("requeue") for c in calls())


def test_preemptible_forwards_usr1_to_the_run_then_requeues(fake_slurm):
    start, calls, _ = fake_slurm
    proc = start("wait")
    deadline = time.monotonic() + 10
    while not calls() and time.monotonic() < deadline:  # the run has started
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@N does
    status, out = _finish(proc)
    assert calls()[1:] == ["run got USR1", "requeue 4242"], out
    assert status == 0 and "USR1 at" in out


def test_preemptible_resumes_without_fresh_after_a_requeue(fake_slurm):
    start, calls, _ = fake_slurm
    status, out = _finish(start(0, restart_count=1, args=["--fresh", "--retries", "2"]))
    assert status == 0, out
    assert calls() == ["run -m hpcmicro run specs/job.toml --checkpoint job.ckpt.h5 --retries 2"]


# -- hpcmicro submit ----------------------------------------------------------------------


def submit(capsys, *argv):
    status = submit_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_submit_dry_run_prints_the_cpu_script(capsys):
    status, out, err = submit(capsys, PI, "--nodes", 2, "--ntasks-per-node", 8, "--time", "1:30:00",
                              "--partition", "short", "--account", "proj1", "--run-args", "--policy static",
                              "--dry-run")
    assert status == 0, err
    lines = out.splitlines()
    for line in ("#SBATCH --job-name=pi", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8",
                 "#SBATCH --time=1:30:00", "#SBATCH --partition=short", "#SBATCH --account=proj1",
                 f"JOB_SPEC={PI}", "RUN_ARGS=(--policy static)", "LAUNCH=(srun --mpi=pmi2)"):
        assert line in lines, line
    assert f"PYTHON=${{HPCMICRO_PYTHON:-{sys.executable}}}" in out
    assert "--signal" not in out and "scontrol requeue" not in out
    assert "\x1b" not in out


def test_submit_dry_run_preemptible_gpu(capsys, tmp_path):
    status, out, err = submit(capsys, PI, "--time", "2:00:00", "--gpus", 4, "--preemptible",
                              "--signal-seconds", 300, "--checkpoint", tmp_path / "pi.ckpt.h5", "--dry-run")
    assert status == 0, err
    lines = out.splitlines()
    for line in ("#SBATCH --gpus-per-node=4", "#SBATCH --ntasks-per-node=4", "#SBATCH --signal=B:USR1@300",
                 "#SBATCH --requeue", "#SBATCH --open-mode=append",
                 f"CHECKPOINT=${{HPCMICRO_CHECKPOINT:-{tmp_path / 'pi.ckpt.h5'}}}"):
        assert line in lines, line
    assert "bind-gpu" in out and "scontrol requeue" in out


def test_submit_preemptible_states_the_runs_grace(capsys):
    status, out, err = submit(capsys, PI, "--time", "1:00:00", "--preemptible", "--run-args", "--preempt-grace 30",
                              "--dry-run")
    assert status == 0, err
    assert "running tasks finish (up to 30 s, --preempt-grace)" in out
    assert "RUN_ARGS=(--preempt-grace 30)" in out.splitlines()
    assert f'[ "$status" -eq {EXIT_PREEMPTED} ]' in out


def test_submit_several_specs_make_an_array(capsys, tmp_path):
    other = tmp_path / "other.toml"
    other.write_text(PI.read_text().replace('output = "pi.h5"', 'output = "other.h5"'))
    (tmp_path / "pi_kernel.py").write_text((ROOT / "jobs" / "pi_kernel.py").read_text())
    status, out, err = submit(capsys, PI, other, "--time", 10, "--ntasks-per-node", 2, "--max-parallel", 1,
                              "--dry-run")
    assert status == 0, err
    assert "#SBATCH --array=0-1%1" in out.splitlines()
    assert f"SPECS=({PI} {other})" in out
    assert "#SBATCH --output=%x-%A_%a.out" in out


def test_submit_without_ntasks_uses_every_cpu(capsys):
    status, out, err = submit(capsys, PI, "--time", 10, "--dry-run")
    assert status == 0, err
    assert "#SBATCH --exclusive" in out.splitlines()
    assert 'LAUNCH=(srun --mpi=pmi2 --ntasks-per-node="$SLURM_CPUS_ON_NODE")' in out


def test_submit_dry_run_matches_render(capsys):
    status, out, _ = submit(capsys, PI, "--time", 5, "--ntasks-per-node", 3, "--dry-run")
    opts = slurm.BatchOptions(kind="cpu", job_name="pi", ntasks_per_node=3, time="5", specs=[str(PI)],
                              python=sys.executable, submitted_by=out.splitlines()[1][len("# Written by "):-1])
    assert status == 0 and out == slurm.render(opts)


@pytest.mark.parametrize("argv, message", [
    (["--time", "soon"], "--time 'soon': not a Slurm time"),
    (["--time", "10", "--nodes", "0"], "--nodes must be an integer >= 1"),
    (["--time", "10", "--gpus", "-1"], "--gpus must be an integer >= 0"),
    (["--time", "2", "--preemptible"], "--signal-seconds 120 is not less than the time limit"),
    (["--time", "10", "--preemptible", "--signal-seconds", "10"],
     "--signal-seconds 10 leaves no time for the checkpoint: running tasks get up to 10 s (--preempt-grace)"),
    (["--time", "10", "--preemptible", "--signal-seconds", "60", "--run-args", "--preempt-grace 90"],
     "--signal-seconds 60 leaves no time for the checkpoint: running tasks get up to 90 s (--preempt-grace)"),
    (["--time", "10", "--run-args", "--retries -1"],
     "--run-args: argument --retries: retries must be an integer >= 0, got -1"),
    (["--time", "10", "--run-args", "--polcy static"], "--run-args: unrecognized arguments: --polcy static"),
    (["--time", "10", "--run-args", "'unclosed"], "--run-args"),
    (["--time", "10", "--checkpoint", "a.h5", "--run-args", "--checkpoint b.h5"], "--checkpoint is given twice"),
    (["--time", "10", "--mpi", "pmi 2"], "--mpi 'pmi 2'"),
    (["--time", "10", "--job-name", "a b"], "--job-name 'a b'"),
])
def test_submit_bad_options_exit_2(capsys, argv, message):
    status, out, err = submit(capsys, PI, *argv, "--dry-run")
    assert status == 2
    assert f"hpcmicro: error: {message}" in err
    assert out == ""


def test_submit_bad_spec_exits_2(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[job]\nkernel = "pi_kernel:hits"\npolcy = "steal"\n[tasks]\nlist = [1]\n')
    status, _, err = submit(capsys, bad, "--time", 10, "--dry-run")
    assert status == 2 and "job.polcy: unknown key" in err


def test_submit_requires_time(capsys):
    status, _, err = submit(capsys, PI, "--dry-run")
    assert status == 2 and "--time" in err


def test_submit_without_sbatch_exits_2_and_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch there
    monkeypatch.chdir(tmp_path)
    status, out, err = submit(capsys, PI, "--time", 10)
    assert status == 2
    assert "hpcmicro: error: sbatch not found" in err and "--dry-run" in err
    assert out == "" and not list(tmp_path.glob("*.sbatch"))


def test_submit_reports_sbatch_refusal(capsys, tmp_path, monkeypatch):
    fake = tmp_path / "sbatch"
    fake.write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    status, out, err = submit(capsys, PI, "--time", 10, "--partition", "nope")
    assert status == 2 and "sbatch refused the job: sbatch: error: invalid partition specified: nope" in err


def test_submit_writes_script_and_prints_job_id(capsys, tmp_path, monkeypatch):
    fake = tmp_path / "sbatch"
    fake.write_text('#!/bin/sh\necho "$@" > sbatch.args\necho "777;cluster"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    status, out, err = submit(capsys, PI, "--time", 10, "--ntasks-per-node", 2, "--script", "my.sbatch")
    assert status == 0, err
    assert out == "777\n"
    assert "submitted job 777; log pi-777.out" in err
    assert (tmp_path / "sbatch.args").read_text().split() == ["--parsable", "my.sbatch"]
    assert "#SBATCH --ntasks-per-node=2" in (tmp_path / "my.sbatch").read_text()


def test_cli_wires_submit(capsys):
    from hpcmicro.app import cli

    commands = next(a for a in cli.build_parser()._actions if a.dest == "command")
    if "submit" not in commands.choices:
        pytest.skip("hpcmicro/cli.py does not add the submit command yet (add_submit_parser)")
    status = cli.main(["submit", str(PI), "--time", "10", "--dry-run"])
    out, _ = capsys.readouterr()
    assert status == 0 and f"JOB_SPEC={PI}" in out
