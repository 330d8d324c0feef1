"""A single rank (plain python) runs everything in-process with the same results."""

import functools

import numpy as np
import pytest

import hpcmicro as hm
from hpcmicro.kernels import uts


@pytest.fixture(scope="module")
def rt():
    with hm.Runtime() as runtime:
        assert runtime.size == 1 and runtime.is_master
        yield runtime


def test_import_does_not_initialize_mpi():
    import subprocess
    import sys

    code = "import sys, hpcmicro; hpcmicro.Range; print('mpi4py.MPI' in sys.modules, 'cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_map_and_reduce_equal_serial(rt):
    assert rt.map(lambda x: x * 3, list(range(20))) == [x * 3 for x in range(20)]
    assert rt.map_reduce(lambda r: sum(r), hm.Range(1000, 33)) == sum(range(1000))
    assert rt.map_reduce(lambda r: np.full(3, r.start, float), hm.Range(10, 2), op="max").tolist() == [8.0] * 3
    assert rt.stats.tasks == 5 and rt.stats.ranks == 1


def test_priorities_run_first(rt):
    order = []

    def record(x):
        order.append(x)
        return x

    tasks = [hm.Task(i, priority=(5 if i % 4 == 0 else 0)) for i in range(12)]
    assert rt.map(record, tasks) == list(range(12))  # results stay in id order
    assert order == [0, 4, 8, 1, 2, 3, 5, 6, 7, 9, 10, 11]  # execution followed priority


def test_spawned_tasks_and_context(rt):
    seen = []

    def kernel(payload):
        ctx = hm.context()
        seen.append((ctx.task_id, ctx.rank, ctx.xp is np))
        if payload < 3:
            ctx.spawn(payload + 1)
            ctx.spawn(payload + 1)
        return payload

    out = rt.map(kernel, [0])
    assert len(out) == 15 and sorted(out) == sorted([0] + [1] * 2 + [2] * 4 + [3] * 8)
    assert out[:4] == [0, 1, 2, 3]  # depth-first, id order
    assert seen[0] == ((0,), 0, True) and ((0, 1, 0, 1), 0, True) in seen


def test_uts_count_in_process(rt):
    p = uts.SMALL_GEO
    assert rt.map_reduce(functools.partial(uts.count_kernel, p), [uts.root(p)]) == uts.serial_count(p)


def test_context_outside_a_kernel_is_an_error():
    with pytest.raises(RuntimeError, match="only available inside a kernel"):
        hm.context()


def test_kernel_error_in_process(rt):
    def bad(x):
        return 1 / x

    with pytest.raises(hm.TaskError) as info:
        rt.map(bad, [3, 2, 0, 1])
    assert info.value.task_id == (2,) and "ZeroDivisionError" in info.value.remote_traceback
    assert rt.map(bad, [1]) == [1.0]  # still usable


@pytest.mark.parametrize("call,msg", [
    (lambda rt: rt.map(len, [1, lambda: 0]), r"task \(1,\) cannot be pickled"),
    (lambda rt: rt.map_reduce(len, ["a"], op="avg"), "unknown op 'avg'"),
    (lambda rt: rt.map_reduce(len, []), "no tasks"),
    (lambda rt: rt.map(len, 5), "finite iterable"),
    (lambda rt: rt.map(len, ["a"], root=1), "root must be None or a rank"),
])
def test_bad_input(rt, call, msg):
    with pytest.raises(hm.InvalidCall, match=msg):
        call(rt)


def test_bad_runtime_options():
    with pytest.raises(hm.InvalidCall, match="unknown policy 'fast'"):
        hm.Runtime(policy="fast")
    with pytest.raises(hm.InvalidCall, match="capacity must be a positive number"):
        hm.Runtime(capacity=0)
