"""hpcmicro plan and hpcmicro inspect."""

import subprocess
import sys

from tests.mpirun import ROOT

CLI = [sys.executable, "-m", "hpcmicro"]


def cli(*args, cwd=None):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=120, cwd=cwd)


def test_plan_counts_and_samples_without_running_the_job(tmp_path):
    run = cli("plan", str(ROOT / "jobs" / "mandelbrot.toml"), "--sample", "2", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "192 root tasks" in run.stdout and "sample: 2 task(s)" in run.stdout
    assert "KB" in run.stdout  # 64x64 int32 tiles: 16.4 KB each
    assert not list(tmp_path.iterdir())  # nothing written: no job ran


def test_plan_reports_spawning_as_lower_bound():
    run = cli("plan", str(ROOT / "jobs" / "uts.toml"), "--set", "job.args.preset=SMALL_BIN")
    assert run.returncode == 0, run.stderr
    assert "children spawned (totals below are lower bounds)" in run.stdout


def test_plan_bad_spec_exit_2():
    run = cli("plan", str(ROOT / "jobs" / "pi.toml"), "--set", "job.polcy=steal")
    assert run.returncode == 2 and "job.polcy: unknown key; did you mean 'policy'?" in run.stderr


def test_inspect_result_and_checkpoint(tmp_path):
    spec = ROOT / "jobs" / "pi.toml"
    run = cli("run", str(spec), "--set", "tasks.range.n=10", "--set", "job.args.samples=1000",
              "--output", str(tmp_path / "pi.h5"), "--checkpoint", str(tmp_path / "ck.h5"))
    assert run.returncode == 0, run.stderr
    out = cli("inspect", str(tmp_path / "pi.h5"))
    assert out.returncode == 0 and "job pi" in out.stdout and "/result" in out.stdout and "spec:" in out.stdout
    ck = cli("inspect", str(tmp_path / "ck.h5"))
    assert ck.returncode == 0 and "call 0: map_reduce over 10 root tasks: complete" in ck.stdout


def test_plan_refuses_bad_ranks_and_sample():
    for flag, value in (("--ranks", "0"), ("--ranks", "-3"), ("--sample", "-1")):
        run = cli("plan", str(ROOT / "jobs" / "pi.toml"), flag, value)
        assert run.returncode == 2, (flag, value, run.stdout)
        assert run.stderr == f"hpcmicro: error: {flag} must be >= {0 if flag == '--sample' else 1}, got {value}\n"
