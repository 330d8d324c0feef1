"""Backend choice and batched kernels (no GPU needed: these test hpcmicro's own logic)."""

import sys
import types

import numpy as np
import pytest

import hpcmicro as hm
from hpcmicro.mpi import devices as backends


class FakeCuda:
    """Stands in for the GPU hardware only: device count and the device last made current."""

    def __init__(self, count):
        self.count = count
        self.used = None
        outer = self

        class Device:
            def __init__(self, dev):
                self.dev = dev

            def use(self):
                outer.used = self.dev

        class runtime:
            @staticmethod
            def getDeviceCount():
                return outer.count

        self.Device, self.runtime = Device, runtime


@pytest.fixture
def fake_cupy(monkeypatch):
    def install(count):
        mod = types.ModuleType("cupy")
        mod.cuda = FakeCuda(count)
        monkeypatch.setitem(sys.modules, "cupy", mod)
        return mod
    return install


def test_cpu_is_numpy_without_touching_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # importing it would fail
    b = backends.select_backend("cpu", comm=None)
    assert b.xp is np and b.device is None and not b.is_gpu


def test_auto_without_cupy_falls_back_and_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    b = backends.select_backend("auto", comm=None, local_rank=0)
    assert b.xp is np and "CuPy not importable" in b.reason and "numpy" in b.describe()


def test_gpu_without_a_device_is_an_error(fake_cupy):
    fake_cupy(0)
    with pytest.raises(hm.InvalidCall, match="device='gpu' but this rank has no GPU: no CUDA device visible"):
        backends.select_backend("gpu", comm=None, local_rank=0)


@pytest.mark.parametrize("local_rank,count,expected", [(0, 4, 0), (3, 4, 3), (5, 4, 1), (2, 1, 0)])
def test_device_is_node_local_rank_modulo_visible_devices(fake_cupy, local_rank, count, expected):
    mod = fake_cupy(count)
    b = backends.select_backend("auto", comm=None, local_rank=local_rank)
    assert b.device == expected and mod.cuda.used == expected and b.xp is mod


def test_slurm_localid_decides_the_node_local_rank(monkeypatch):
    monkeypatch.setenv("SLURM_LOCALID", "6")
    assert backends.node_local_rank(comm=None) == 6


def test_unknown_device_name():
    with pytest.raises(hm.InvalidCall, match="device must be one of auto, cpu, gpu"):
        hm.Runtime(device="tpu")


def test_runtime_gpu_without_gpu_raises_clearly():
    if backends._cupy_devices()[0] is not None:
        pytest.skip("this machine has a GPU")
    with pytest.raises(hm.InvalidCall, match="rank 0: device='gpu' but this rank has no GPU"):
        hm.Runtime(device="gpu").open()


def test_out_of_memory_is_recognized_by_name():
    OutOfMemoryError = type("OutOfMemoryError", (Exception,), {})
    assert backends.is_out_of_memory(OutOfMemoryError("Out of memory allocating 1 GB"))
    assert not backends.is_out_of_memory(ValueError("memory"))


# -- batched kernels -----------------------------------------------------------------------

calls = {"batch": 0, "single": 0}


def _one(x):
    return x * x + 1


class SquarePlusOne:
    """A kernel with a batched form, like the GPU kernels of hpcmicro.kernels."""

    def __call__(self, x):
        calls["single"] += 1
        return _one(x)

    def batch(self, xs):
        calls["batch"] += 1
        if len(xs) > 64:  # like a device out of memory on too large a batch
            raise type("OutOfMemoryError", (Exception,), {})("out of memory")
        return [_one(x) for x in xs]


def test_batched_form_is_used_for_small_tasks_and_gives_the_same_results():
    calls.update(batch=0, single=0)
    with hm.Runtime() as rt:
        out = rt.map(SquarePlusOne(), list(range(5000)))
        assert out == [_one(x) for x in range(5000)]
        assert rt.stats.workers[0]["batches"] > 0 and calls["batch"] > 0
        total = rt.map_reduce(SquarePlusOne(), list(range(5000)))
        assert total == sum(_one(x) for x in range(5000))
    # Batches over 64 "ran out of memory" and were run one task at a time instead.
    assert calls["single"] > 0


def test_batched_kernels_cannot_spawn():
    class Spawner:
        def __call__(self, x):
            return x

        def batch(self, xs):
            hm.context().spawn(1)

    with hm.Runtime() as rt:
        # The batch fails, the tasks run one by one (which may not spawn either: they don't).
        assert rt.map(Spawner(), list(range(200))) == list(range(200))
