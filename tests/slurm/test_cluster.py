"""The batch scripts in slurm/ and ``hpcmicro submit`` on a real Slurm cluster.

Each test submits the real script with ``sbatch`` from its own folder, waits (with a
timeout) and checks the job's state, exit status, log and HDF5 result. The preemption
tests interrupt a running job (``scancel --signal=USR1 --batch``, ``scontrol requeue``)
and check that the requeued job resumes from its checkpoint and ends with bitwise the
result of an uninterrupted run.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from hpcmicro.app.submit import main as submit_main
from hpcmicro.io.results import read_result
from tests.slurm.slurmjobs import (ROOT, SLURM_DIR, TERMINAL, _run, assert_state, diagnostics, sbatch,
                                   wait_for)

JOBS = ROOT / "jobs"
PI_N, PI_SAMPLES = 40, 20000
PREEMPT_TASKS, PREEMPT_SLEEP = 600, 0.05  # ~10 s of sleeping per worker with three workers

# A task sleeps SLOWSUM_SLEEP seconds (a job's environment sets it; the reference run
# leaves it out) and returns a float whose sum depends on the order of addition.
SLOWSUM = '''
import os
import time

from hpcmicro.kernels.synthetic import order_sensitive_value


def value(indices):
    time.sleep(float(os.environ.get("SLOWSUM_SLEEP", "0")) * len(indices))
    return sum(order_sensitive_value(i) for i in indices)


def boom(indices):
    raise RuntimeError(f"boom in {indices}")


def where(index):
    return (int(os.environ.get("SLURM_LOCALID", "-1")), os.environ.get("CUDA_VISIBLE_DEVICES", ""))
'''


def write_pi(folder: Path, name="pi", output=None) -> Path:
    """A small pi spec (and its kernel) in ``folder``."""
    (folder / "pi_kernel.py").write_text((JOBS / "pi_kernel.py").read_text())
    spec = folder / f"{name}.toml"
    spec.write_text(f'[job]\nname = "{name}"\nkernel = "pi_kernel:hits"\nop = "sum"\n'
                    f'output = "{output or name + ".h5"}"\n'
                    f'[job.args]\nsamples = {PI_SAMPLES}\nseed = 3\n[tasks]\nrange = {{ n = {PI_N}, chunk = 2 }}\n')
    return spec


def pi_reference() -> int:
    spec = importlib.util.spec_from_file_location("pi_kernel_ref", JOBS / "pi_kernel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return sum(module.task_hits(i, PI_SAMPLES, 3) for i in range(PI_N))


def write_slowsum(folder: Path, name="slowsum", kernel="value", tasks=PREEMPT_TASKS, call="op = \"sum\"") -> Path:
    (folder / "slowsum.py").write_text(SLOWSUM)
    spec = folder / f"{name}.toml"
    spec.write_text(f'[job]\nname = "{name}"\nkernel = "slowsum:{kernel}"\n{call}\n'
                    f'[tasks]\nrange = {{ n = {tasks} }}\n')
    return spec


def result_of(path: Path):
    return read_result(path).value


def read_logs(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(folder.glob("*.out")))


def assert_clean_log(text: str):
    assert "\x1b" not in text, "terminal escape codes in a batch log"


# -- the scripts --------------------------------------------------------------------------


def test_cpu_script_runs_a_job_spec(cluster, tmp_path):
    spec = write_pi(tmp_path)
    job = sbatch(cluster, SLURM_DIR / "cpu.sbatch", [spec, "--policy", "static"],
                 [f"--ntasks-per-node={cluster.ranks}", "--time=5"], cwd=tmp_path)
    records = wait_for(cluster, job, tmp_path, timeout=120)
    assert_state(cluster, records, tmp_path)
    assert int(result_of(tmp_path / "pi.h5")) == pi_reference()
    attrs = read_result(tmp_path / "pi.h5", value=False).attrs
    assert attrs.ranks == cluster.ranks and attrs.policy == "static"
    log = (tmp_path / f"hpcmicro-{job}.out").read_text()
    assert f"on {cluster.ranks} rank" in log and "-> pi.h5" in log
    assert_clean_log(log)


def test_a_failing_kernel_fails_the_job_without_requeue(cluster, tmp_path):
    spec = write_slowsum(tmp_path, name="fails", kernel="boom", tasks=5)
    job = sbatch(cluster, SLURM_DIR / "preemptible.sbatch", [spec],
                 [f"--ntasks-per-node={min(2, cluster.ranks)}", "--time=5"], cwd=tmp_path)
    records = wait_for(cluster, job, tmp_path, timeout=120)
    assert_state(cluster, records, tmp_path, state="FAILED", status=1)
    assert records[0].restarts == 0
    log = read_logs(tmp_path)
    assert "hpcmicro: error: task" in log and "RuntimeError: boom" in log and "step exited 1" in log
    assert "requeueing" not in log
    assert_clean_log(log)


def test_array_script_runs_specs_and_list_lines(cluster, tmp_path):
    ranks = min(2, cluster.ranks)
    a, b = write_pi(tmp_path, "a"), write_pi(tmp_path, "b")
    runs = tmp_path / "runs.txt"
    runs.write_text(f"# spec and options, one run a line\n{a} --output list0.h5\n\n"
                    f"{b} --output list1.h5 --policy static\n")
    by_args = sbatch(cluster, SLURM_DIR / "array.sbatch", [a, b],
                     ["--array=0-1", f"--ntasks-per-node={ranks}", "--time=5"], cwd=tmp_path)
    by_list = sbatch(cluster, SLURM_DIR / "array.sbatch", [runs],
                     ["--array=0-1", f"--ntasks-per-node={ranks}", "--time=5"], cwd=tmp_path)
    for job in (by_args, by_list):
        records = wait_for(cluster, job, tmp_path, timeout=180)
        assert len(records) == 2, [r.fields for r in records]
        assert_state(cluster, records, tmp_path)
    expected = pi_reference()
    for out in ("a.h5", "b.h5", "list0.h5", "list1.h5"):
        assert int(result_of(tmp_path / out)) == expected, out
    assert read_result(tmp_path / "list1.h5", value=False).attrs.policy == "static"
    assert sorted(p.name for p in tmp_path.glob("*.out")) == sorted(
        f"hpcmicro-{job}_{i}.out" for job in (by_args, by_list) for i in (0, 1))
    assert_clean_log(read_logs(tmp_path))


def test_gpu_script_runs_one_rank_per_gpu(cluster, tmp_path):
    if cluster.gpus < 1:
        pytest.skip("the cluster's node has no GRES gpu (local cluster: start it with HPCMICRO_SLURM_GPUS=2)")
    gpus = min(2, cluster.gpus, cluster.cpus)
    spec = write_slowsum(tmp_path, name="where", kernel="where", tasks=6, call="")
    job = sbatch(cluster, SLURM_DIR / "gpu.sbatch", [spec],
                 [f"--gpus-per-node={gpus}", f"--ntasks-per-node={gpus}", "--cpus-per-task=1", "--time=5"],
                 cwd=tmp_path)
    records = wait_for(cluster, job, tmp_path, timeout=120)
    assert_state(cluster, records, tmp_path)
    results = result_of(tmp_path / "where.h5")
    assert len(results) == 6
    for local_id, visible in results:
        assert 0 <= local_id < gpus  # ran under srun, on this node
        assert "," not in visible    # a rank sees one GPU at most
    log = read_logs(tmp_path)
    assert f"on {gpus} rank" in log
    assert_clean_log(log)


# -- preemption ---------------------------------------------------------------------------


@pytest.fixture
def slowsum(tmp_path):
    """The spec, and its uninterrupted result (one process, no sleeping: same tasks, same tree)."""
    spec = write_slowsum(tmp_path)
    ref = tmp_path / "reference.h5"
    done = subprocess.run([sys.executable, "-m", "hpcmicro", "run", str(spec), "--output", str(ref)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return spec, result_of(ref)


def _preempt(cluster, tmp_path, spec, how):
    """Submit the preemptible script, interrupt it with ``how`` once a checkpoint exists, wait."""
    checkpoint = tmp_path / "slowsum.ckpt.h5"
    job = sbatch(cluster, SLURM_DIR / "preemptible.sbatch", [spec, "--checkpoint-every", "1", "--output", "result.h5"],
                 [f"--ntasks-per-node={cluster.ranks}", "--time=10"], cwd=tmp_path,
                 env={"SLOWSUM_SLEEP": str(PREEMPT_SLEEP)})

    def checkpointed(records):
        if records and records[0].state in TERMINAL:
            pytest.fail(f"job {job} ended ({records[0].state}) before it could be preempted\n"
                        f"{diagnostics(cluster, job, tmp_path)}")
        return records and records[0].state == "RUNNING" and checkpoint.exists()

    wait_for(cluster, job, tmp_path, timeout=120, until=checkpointed, what="a running job with a checkpoint")
    done = _run(how(job), cluster.env)
    assert done.returncode == 0, f"{' '.join(how(job))}: {done.stdout}{done.stderr}"
    records = wait_for(cluster, job, tmp_path, timeout=240, what="the requeued job to finish",
                       until=lambda rs: rs and rs[0].state in TERMINAL)
    assert_state(cluster, records, tmp_path)
    log = read_logs(tmp_path)
    assert records[0].restarts >= 1, f"the job was not requeued\n{log}"
    return job, log, checkpoint


def _resumed_tasks(log: str) -> int:
    summary = [line for line in log.splitlines() if line.startswith("slowsum: map_reduce")]
    assert len(summary) == 1, log
    return int(re.search(r"\((\d+) run\)", summary[0]).group(1))


@pytest.mark.timeout(420)
def test_usr1_checkpoints_requeues_and_resumes_exactly(cluster, tmp_path, slowsum):
    spec, reference = slowsum
    job, log, checkpoint = _preempt(cluster, tmp_path, spec,
                                    lambda job: ["scancel", "--signal=USR1", "--batch", job])
    result = result_of(tmp_path / "result.h5")
    assert result.tobytes() == reference.tobytes(), (result, reference)
    assert "hpcmicro: USR1 at" in log and "preempted by SIGUSR1" in log, log
    assert f"requeueing job {job}" in log and f"job {job} start 1 " in log, log
    assert 0 < _resumed_tasks(log) < PREEMPT_TASKS, log  # the requeued run picked up where it stopped
    assert "hpcmicro: done" in log and not checkpoint.exists()
    assert_clean_log(log)


@pytest.mark.timeout(420)
def test_scontrol_requeue_resumes_exactly(cluster, tmp_path, slowsum):
    spec, reference = slowsum
    job, log, checkpoint = _preempt(cluster, tmp_path, spec, lambda job: ["scontrol", "requeue", job])
    result = result_of(tmp_path / "result.h5")
    assert result.tobytes() == reference.tobytes(), (result, reference)
    assert "hpcmicro: TERM at" in log, log
    assert "requeueing job" not in log, log  # Slurm requeued it; the script must not do it twice
    assert f"job {job} start 1 " in log, log
    assert 0 < _resumed_tasks(log) < PREEMPT_TASKS, log
    assert not checkpoint.exists()
    assert_clean_log(log)


# -- hpcmicro submit ----------------------------------------------------------------------


def test_submit_command_runs_a_job_and_an_array(cluster, tmp_path, monkeypatch, capsys):
    for key, value in cluster.env.items():  # SLURM_CONF (if needed) and the MPICH settings
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    spec, other = write_pi(tmp_path, "one"), write_pi(tmp_path, "two")
    ranks = min(2, cluster.ranks)
    common = ["--time", "5", "--ntasks-per-node", str(ranks), "--partition", cluster.partition]
    assert submit_main([str(spec), *common, "--run-args", "--policy static --output single.h5"]) == 0
    single = capsys.readouterr().out.strip()
    assert submit_main([str(spec), str(other), *common, "--job-name", "both", "--run-args", "--retries 1"]) == 0
    array = capsys.readouterr().out.strip()
    assert single.isdigit() and array.isdigit()
    assert_state(cluster, wait_for(cluster, single, tmp_path, timeout=120), tmp_path)
    records = wait_for(cluster, array, tmp_path, timeout=180)
    assert len(records) == 2
    assert_state(cluster, records, tmp_path)
    assert (tmp_path / "one.sbatch").exists() and (tmp_path / "both.sbatch").exists()
    expected = pi_reference()
    for out in ("single.h5", "one.h5", "two.h5"):
        assert int(result_of(tmp_path / out)) == expected
    assert (tmp_path / f"one-{single}.out").exists()
    assert_clean_log(read_logs(tmp_path))


# -- the ready jobs, through srun ----------------------------------------------------------

READY_JOBS = {  # small sizes, as in tests/jobs
    "uts": ["job.args.preset=SMALL_BIN"],
    "mandelbrot": ["job.args.width=128", "job.args.height=96", "tasks.blocks.shape=[96, 128]",
                   "job.args.block=[32, 32]", "tasks.blocks.block=[32, 32]"],
    "gemm": ["job.args.m=128", "job.args.n=128", "job.args.k=64", "job.args.block_m=64", "job.args.block_n=64",
             "tasks.blocks.shape=[128, 128]", "tasks.blocks.block=[64, 64]"],
    "sweep": ["job.args.points=60", "tasks.range.n=60", "job.args.mean_iters=500"],
    "transform": ["job.args.shape=[128, 96]", "job.args.chunk=[32, 32]", "tasks.blocks.shape=[128, 96]",
                  "tasks.blocks.block=[32, 32]"],
}


def test_every_ready_job_runs_under_srun(cluster, tmp_path):
    """The jobs/ specs through the real CPU script (srun --mpi=pmi2), checked against their references."""
    from hpcmicro.kernels import uts

    jobs = {}
    for name, overrides in READY_JOBS.items():
        args = [JOBS / f"{name}.toml", "--output", tmp_path / f"{name}.h5"]
        for o in overrides:
            args += ["--set", o]
        sbatch_args = [f"--ntasks-per-node={cluster.ranks}", "--time=5", f"--job-name=ready-{name}"]
        jobs[name] = sbatch(cluster, SLURM_DIR / "cpu.sbatch", args, sbatch_args, cwd=tmp_path)
    for name, job in jobs.items():
        records = wait_for(cluster, job, tmp_path, timeout=180, what=f"the {name} job to end")
        assert_state(cluster, records, tmp_path)
    assert int(result_of(tmp_path / "uts.h5")) == uts.serial_count(uts.SMALL_BIN)
    sys.path.insert(0, str(JOBS))
    import numpy as np

    from hpcmicro.kernels import gemm, mandelbrot

    with h5py.File(tmp_path / "mandelbrot.h5", "r") as f:
        np.testing.assert_array_equal(f["image"][()], mandelbrot.serial_image(
            mandelbrot.MandelbrotParams(width=128, height=96, max_iter=500)))
    a, b = gemm.matrices(gemm.GemmParams(m=128, n=128, k=64, block_m=64, block_n=64), np)
    with h5py.File(tmp_path / "gemm.h5", "r") as f:
        np.testing.assert_allclose(f["C"][()], a @ b, rtol=1e-12, atol=1e-12)
    import sweep_kernel

    rows = result_of(tmp_path / "sweep.h5")
    np.testing.assert_array_equal(rows, [sweep_kernel.lyapunov(i, points=60, mean_iters=500) for i in range(60)])
    with h5py.File(tmp_path / "transform_input.h5", "r") as f:
        x = f["data"][()]
    with h5py.File(tmp_path / "transform_out.h5", "r") as f:
        np.testing.assert_allclose(f["data"][()], np.sqrt(np.abs(x)) * np.sin(x), rtol=1e-15)
