"""The runtime on a real GPU: binding, batched kernels, device-array reductions.

Skipped, with the reason, where CuPy or a CUDA device is missing (as in CI);
run on a GPU machine with ``python -m pytest tests/gpu``.
"""

import functools
import sys

import numpy as np
import pytest

import hpcmicro as hm
from hpcmicro.mpi.devices import _cupy_devices
from tests.mpirun import mpiexec, run_command

cupy, why = _cupy_devices()
pytestmark = pytest.mark.skipif(cupy is None, reason=f"needs CuPy and a CUDA device: {why}")


def test_gpu_rank_binds_and_uses_cupy():
    seen = []

    def kernel(x):
        ctx = hm.context()
        seen.append((ctx.xp.__name__, ctx.device))
        return int(ctx.xp.asarray([x]).sum())

    with hm.Runtime(device="gpu") as rt:
        assert rt.map(kernel, [1, 2, 3]) == [1, 2, 3]
    assert seen and all(name == "cupy" and dev == 0 for name, dev in seen)


def test_batched_montecarlo_on_gpu_equals_cpu_exactly():
    from hpcmicro.kernels import montecarlo

    params = montecarlo.MCParams(samples=1 << 16)
    with hm.Runtime(device="cpu") as rt:
        cpu = rt.map_reduce(montecarlo.pi_kernel(params), list(range(200)))
    with hm.Runtime(device="gpu") as rt:
        gpu = rt.map_reduce(montecarlo.pi_kernel(params), list(range(200)))
        assert rt.stats.workers[0]["batches"] > 0
    assert cpu == gpu


def test_device_array_reduction_matches_cpu():
    from hpcmicro.kernels import nbody

    params = nbody.NBodyParams(n=1024, block=256)
    with hm.Runtime(device="cpu") as rt:
        cpu = rt.map_reduce(functools.partial(nbody.force_block, params), nbody.tasks(params))
    with hm.Runtime(device="gpu") as rt:
        gpu = rt.map_reduce(functools.partial(nbody.force_block, params), nbody.tasks(params))
    assert isinstance(gpu, np.ndarray)  # results come back to the host
    np.testing.assert_array_equal(cpu, gpu)  # bit-identical tiles, same combine tree


SCRIPT = """
import functools, json
import hpcmicro as hm
from hpcmicro.kernels import montecarlo
params = montecarlo.MCParams(samples=1 << 14)
with hm.Runtime(device="auto") as rt:
    total = rt.map_reduce(montecarlo.pi_kernel(params), list(range(300)))
    print(json.dumps({"rank": rt.rank, "total": total, "device": rt.backend.device if rt.backend else None}))
"""


def test_several_gpu_ranks_under_mpiexec(tmp_path):
    script = tmp_path / "gpu_job.py"
    script.write_text(SCRIPT)
    run = run_command([mpiexec(), "-n", "3", sys.executable, str(script)], timeout=300)
    reps = run.reports()
    assert run.returncode == 0 and len(reps) == 3, str(run)
    assert len({r["total"] for r in reps}) == 1
    assert all(r["device"] is not None for r in reps if r["rank"] != 0)
