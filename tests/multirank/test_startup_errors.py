"""A startup step that fails (or chooses differently) on one rank only: every rank agrees, nobody hangs.

Each test starts its own ``mpiexec -n 3`` in MPMD form (``A : B : C``), so that
only rank 1 gets the bad setting, as a node of its own would. Before, a rank
whose device binding or ULFM probe raised left ``Runtime.open`` alone while the
others waited in the next allgather (and the failed rank in MPI_Finalize): the
job hung until its time limit. Binding a GPU also asked MPI for the node-local
rank with ``Split_type`` on the workers only (the master binds nothing), which
hung every multi-rank GPU run started without Slurm.

No GPU is needed: a stand-in ``cupy`` package (a device count, a device that
can be made current or fails to be) sits on the workers' PYTHONPATH, as CuPy
would on a GPU node.
"""

from __future__ import annotations

import os
import sys

from tests.mpirun import ROOT, mpiexec, run_command

FAKE_CUPY = '''
"""Stands in for CuPy on a node with two GPUs; FAKE_CUPY_BUSY makes every device refuse to be used."""
import os


class runtime:
    @staticmethod
    def getDeviceCount():
        return 2


class Device:
    def __init__(self, dev):
        self.dev = dev

    def use(self):
        if os.environ.get("FAKE_CUPY_BUSY"):
            raise RuntimeError("cudaErrorDevicesUnavailable: all CUDA-capable devices are busy or unavailable")


class cuda:
    runtime = runtime
    Device = Device
'''

JOB = '''
import json, os, sys

if os.environ.get("BREAK_ULFM_PROBE"):  # this rank's MPI library query fails
    from mpi4py import MPI

    def broken():
        raise RuntimeError("injected: MPI_Get_library_version failed")

    MPI.Get_library_version = broken

import hpcmicro as hm
from mpi4py import MPI

rank = MPI.COMM_WORLD.rank
try:
    with hm.Runtime(device=sys.argv[1]) as rt:
        total = rt.map_reduce(abs, [-1, 2, -3, 4, -5, 6], op="sum")
        print(json.dumps({"rank": rank, "total": total, "ulfm": rt._ulfm,
                          "backend": rt.backend.describe() if rt.backend else "master"}), flush=True)
except hm.InvalidCall as exc:
    print(json.dumps({"rank": rank, "error": str(exc)}), flush=True)
    sys.exit(2)
'''


def run_three(tmp_path, device, rank1_env, everyone_env=None, timeout=60):
    """``mpiexec`` of JOB on 3 ranks; ``rank1_env`` only for rank 1 (MPMD), ``everyone_env`` for all."""
    (tmp_path / "fake" / "cupy").mkdir(parents=True, exist_ok=True)
    (tmp_path / "fake" / "cupy" / "__init__.py").write_text(FAKE_CUPY)
    job = tmp_path / "job.py"
    job.write_text(JOB)
    argv = [mpiexec()]
    for rank in range(3):
        if rank:
            argv.append(":")
        argv += ["-n", "1"]
        for name, value in (rank1_env if rank == 1 else {}).items():
            argv += ["-env", name, value]
        argv += [sys.executable, str(job), device]
    env = dict(everyone_env or {})
    env.setdefault("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env["SLURM_LOCALID"] = ""  # under srun, its value would be the test's, the same on every rank: not a rank's
    return run_command(argv, timeout=timeout, env=env)


def by_rank(run) -> dict:
    reps = {r["rank"]: r for r in run.reports()}
    assert sorted(reps) == [0, 1, 2], str(run)
    return reps


def with_fake_cupy(tmp_path) -> dict:
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), str(ROOT)])}


def test_a_gpu_that_fails_on_rank_1_is_the_same_error_on_every_rank(tmp_path):
    run = run_three(tmp_path, "gpu", {"FAKE_CUPY_BUSY": "1"}, with_fake_cupy(tmp_path))
    reps = by_rank(run)
    errors = {r.get("error") for r in reps.values()}
    assert len(errors) == 1 and None not in errors, str(run)
    (error,) = errors
    assert error.startswith("rank 1: device='gpu' but this rank's GPU 1 of 2 visible cannot be used: "
                            "RuntimeError: cudaErrorDevicesUnavailable"), error
    assert "rank 2" not in error  # rank 2 bound its GPU
    assert run.returncode == 2, str(run)


def test_auto_falls_back_on_the_rank_whose_gpu_fails_and_the_call_runs(tmp_path):
    run = run_three(tmp_path, "auto", {"FAKE_CUPY_BUSY": "1"}, with_fake_cupy(tmp_path))
    assert run.returncode == 0, str(run)
    reps = by_rank(run)
    assert {r["total"] for r in reps.values()} == {21}
    assert reps[1]["backend"].startswith("numpy (GPU 1 of 2 visible cannot be used: RuntimeError"), reps[1]
    # The device is the node-local rank (Hydra's MPI_LOCALRANKID) modulo the visible devices.
    assert reps[2]["backend"] == "cupy on GPU 0", reps[2]


def test_gpu_ranks_bind_without_slurm(tmp_path):
    """Every worker finds a GPU and no launcher variable of Slurm's: nobody waits for the master."""
    run = run_three(tmp_path, "auto", {}, with_fake_cupy(tmp_path))
    assert run.returncode == 0, str(run)
    reps = by_rank(run)
    assert [reps[r]["backend"] for r in (0, 1, 2)] == ["master", "cupy on GPU 1", "cupy on GPU 0"]


def test_a_ulfm_probe_that_raises_on_rank_1_means_no_ulfm_on_every_rank(tmp_path):
    run = run_three(tmp_path, "cpu", {"BREAK_ULFM_PROBE": "1"})
    assert run.returncode == 0, str(run)
    reps = by_rank(run)
    assert all(r["total"] == 21 and r["ulfm"] is False for r in reps.values()), reps
    assert "rank 1: the ULFM probe failed (RuntimeError: injected: MPI_Get_library_version failed)" in run.stderr
