"""Every ready job in jobs/ runs (small sizes, via --set) under mpiexec and with plain
python, and its output matches an independent reference."""

import math
import re
import sys

import h5py
import numpy as np
import pytest

from hpcmicro.io.results import read_result
from tests.mpirun import ROOT, mpiexec, run_command

JOBS = ROOT / "jobs"
sys.path.insert(0, str(JOBS))  # the job modules, for the references


def launch(tmp_path, name, *overrides, ranks=3):
    """Run jobs/NAME.toml with ``--set`` overrides, output to tmp_path/NAME.h5; the finished run."""
    out = tmp_path / f"{name}.h5"
    argv = [sys.executable, "-m", "hpcmicro", "run", str(JOBS / f"{name}.toml"), "--output", str(out)]
    for o in overrides:
        argv += ["--set", o]
    if ranks > 1:
        argv = [mpiexec(), "-n", str(ranks)] + argv
    run = run_command(argv, timeout=180, cwd=tmp_path)
    assert run.returncode == 0, str(run)
    return run


def run_job(tmp_path, name, *overrides, ranks=3):
    launch(tmp_path, name, *overrides, ranks=ranks)
    return tmp_path / f"{name}.h5"


@pytest.mark.parametrize("ranks", [1, 3])
def test_pi_prints_the_estimate_and_keeps_the_count(tmp_path, ranks):
    import pi_kernel

    n, samples = 40, 20000
    run = launch(tmp_path, "pi", f"tasks.range.n={n}", f"job.args.samples={samples}", ranks=ranks)
    hits = int(read_result(tmp_path / "pi.h5").value)
    assert hits == sum(pi_kernel.task_hits(i, samples, 0) for i in range(n))  # the file holds the exact count
    last = run.stdout.splitlines()[-1]
    m = re.fullmatch(r"pi ~ (\d\.\d{5}) \((\d+) samples\)", last)
    assert m, run.stdout
    points = int(m[2])
    assert points == n * samples and m[1] == f"{4 * hits / points:.5f}"
    # Each point hits with probability p = pi/4, so 4 * hits / N has standard deviation
    # 4 sqrt(p (1 - p) / N), 0.0018 here; 5 of those fail a correct kernel once in ~1.7 million seeds.
    sigma = 4 * math.sqrt(math.pi / 4 * (1 - math.pi / 4) / points)
    assert abs(float(m[1]) - math.pi) < 5 * sigma


def test_mandelbrot_image_and_png(tmp_path):
    from hpcmicro.kernels import mandelbrot

    out = run_job(tmp_path, "mandelbrot", "job.args.width=200", "job.args.height=120",
                  "tasks.blocks.shape=[120, 200]", "job.args.block=[32, 32]", "tasks.blocks.block=[32, 32]")
    with h5py.File(out) as f:
        image = f["image"][()]
    reference = mandelbrot.serial_image(mandelbrot.MandelbrotParams(width=200, height=120, max_iter=500))
    np.testing.assert_array_equal(image, reference)
    png = (tmp_path / "mandelbrot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 200


def test_gemm_matches_numpy(tmp_path):
    from hpcmicro.kernels import gemm

    out = run_job(tmp_path, "gemm", "job.args.m=192", "job.args.n=160", "job.args.k=100",
                  "job.args.block_m=64", "job.args.block_n=64", "tasks.blocks.shape=[192, 160]",
                  "tasks.blocks.block=[64, 64]")
    params = gemm.GemmParams(m=192, n=160, k=100, block_m=64, block_n=64, seed=0)
    a, b = gemm.matrices(params, np)
    with h5py.File(out) as f:
        c = f["C"][()]
    np.testing.assert_allclose(c, a @ b, rtol=1e-12, atol=1e-12)


def test_heavy_tailed_sweep_equals_serial(tmp_path):
    import sweep_kernel

    out = run_job(tmp_path, "sweep", "job.args.points=120", "tasks.range.n=120", "job.args.mean_iters=1000")
    with h5py.File(out) as f:
        rows = f["result"][()]
    reference = np.array([sweep_kernel.lyapunov(i, points=120, mean_iters=1000) for i in range(120)])
    np.testing.assert_array_equal(rows, reference)
    assert rows[:, 2].max() > 10 * np.median(rows[:, 2])  # the tail is heavy


@pytest.mark.parametrize("policy", ["steal", "static"])
def test_uts_node_count(tmp_path, policy):
    from hpcmicro.kernels import uts

    out = run_job(tmp_path, "uts", "job.args.preset=SMALL_BIN", f"job.policy={policy}")
    with h5py.File(out) as f:
        assert int(f["result"][()]) == uts.serial_count(uts.SMALL_BIN) == 13457


def test_hdf5_transform(tmp_path):
    run_job(tmp_path, "transform", "job.args.shape=[300, 260]", "job.args.chunk=[64, 64]",
            "tasks.blocks.shape=[300, 260]", "tasks.blocks.block=[64, 64]",
            f"job.args.input={tmp_path / 'in.h5'}", f"job.args.output={tmp_path / 'out.h5'}")
    with h5py.File(tmp_path / "in.h5") as f:
        x = f["data"][()]
    with h5py.File(tmp_path / "out.h5") as f:
        y = f["data"][()]
    np.testing.assert_allclose(y, np.sqrt(np.abs(x)) * np.sin(x), rtol=1e-15)
