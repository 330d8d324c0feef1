"""Kernel and op names: equal across processes for the same call, different for different bound state."""

import functools
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import hpcmicro as hm
from hpcmicro.errors import InvalidCall
from hpcmicro.identity import UNPICKLABLE, checkpoint_safe, describe_callable, require_checkpoint_safe
from hpcmicro.io.checkpoint import CheckpointError
from hpcmicro.kernels.batched import Batched
from tests.mpirun import ROOT


def scaled(weights, i):
    return float(weights[i % len(weights)]) * i


def total(r):
    return sum(r)


def locked_double(lock, x):
    with lock:
        return 2 * x


def add_mod(m, a, b):
    return (a + b) % m


class Scale:
    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return self.k * x

    def run(self, x):
        return self.k * x


def middle_differs():
    a = np.arange(10_000, dtype=np.int64)
    b = a.copy()
    b[5_000] = -1
    assert repr(a) == repr(b)  # what made the old, repr-based name ambiguous
    return a, b


def test_bound_arrays_differing_in_the_middle_get_different_names():
    a, b = middle_differs()
    assert describe_callable(functools.partial(scaled, a)) != describe_callable(functools.partial(scaled, b))
    assert describe_callable(functools.partial(scaled, a)) == describe_callable(functools.partial(scaled, a.copy()))


def test_names_distinguish_every_kind_of_bound_state():
    a, b = middle_differs()
    pairs = [
        (functools.partial(functools.partial(scaled, a)), functools.partial(functools.partial(scaled, b))),
        (functools.partial(scaled, weights=a), functools.partial(scaled, weights=b)),
        (Scale(2), Scale(3)),
        (Scale(2).run, Scale(3).run),
        (Batched(functools.partial(scaled, a), total), Batched(functools.partial(scaled, b), total)),
    ]
    for x, y in pairs:
        assert describe_callable(x) != describe_callable(y), (x, y)
        assert "0x" not in describe_callable(x)


def test_keyword_order_and_plain_functions():
    f = functools.partial(add_mod, a=1, m=7)
    g = functools.partial(add_mod, m=7, a=1)
    assert describe_callable(f) == describe_callable(g)
    assert describe_callable(scaled) == f"{__name__}.scaled"
    assert describe_callable(np.add) == "numpy.add"


def test_unpicklable_bound_arguments_are_marked_and_not_checkpoint_safe():
    lock = threading.Lock()
    fn = functools.partial(scaled, lock)
    name = describe_callable(fn)
    assert f"args{UNPICKLABLE}" in name and "0x" not in name
    reason = checkpoint_safe(fn)
    assert reason is not None and "cannot pickle '_thread.lock'" in reason
    assert checkpoint_safe(functools.partial(scaled, np.arange(3))) is None
    assert checkpoint_safe(scaled) is None
    with pytest.raises(InvalidCall, match=r"checkpoint=run.h5: the op's bound state cannot be pickled"):
        require_checkpoint_safe("run.h5", kernel=scaled, op=fn)
    require_checkpoint_safe("run.h5", kernel=scaled, op="sum")  # an op name is fine


CHILD = """
import functools, json, sys
import numpy as np
from hpcmicro.identity import describe_callable
from hpcmicro.engine.combine import resolve_op
from tests.unit.test_identity import Scale, add_mod, scaled
fns = [functools.partial(scaled, np.arange(10_000)), functools.partial(scaled, {"alpha", "beta", "gamma", "delta"}),
       functools.partial(scaled, [frozenset({"x", "y", "z"}), {"k": {"p", "q", "r"}}]), Scale({"u", "v", "w"}),
       Scale(3).run, np.add]
print(json.dumps([describe_callable(f) for f in fns] + [resolve_op(functools.partial(add_mod, 7))[0],
                                                          resolve_op(Scale(5))[0]]))
"""


def names_in_a_process(seed):
    env = dict(os.environ, PYTHONHASHSEED=str(seed), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_names_are_equal_in_processes_with_different_hash_seeds():
    # Ranks are separate processes: different addresses, different string-hash
    # orders (sets pickle in that order). Their names must not differ.
    first, second = names_in_a_process(1), names_in_a_process(2)
    assert first == second
    assert not any("0x" in name for name in first), first


def test_runtime_and_batched_use_this_implementation():
    from hpcmicro import runtime
    from hpcmicro.kernels import batched

    a, b = middle_differs()
    assert runtime.describe_callable is describe_callable
    assert batched.Batched(functools.partial(scaled, a), total).__qualname__ == \
        f"Batched[{describe_callable(functools.partial(scaled, a))}|{describe_callable(total)}]"
    assert batched.Batched(functools.partial(scaled, a), total).__qualname__ != \
        batched.Batched(functools.partial(scaled, b), total).__qualname__


def test_checkpoint_of_a_job_with_other_bound_arrays_is_refused(tmp_path):
    a, b = middle_differs()
    path = tmp_path / "run.h5"
    expected_a = sum(float(a[i % len(a)]) * i for i in range(20_000))
    with hm.Runtime(checkpoint=path) as rt:
        assert rt.map_reduce(functools.partial(scaled, a), list(range(20_000))) == expected_a
    with hm.Runtime(checkpoint=path) as rt:  # another job: must not be served a's result
        with pytest.raises(CheckpointError, match="belongs to a different job"):
            rt.map_reduce(functools.partial(scaled, b), list(range(20_000)))


def test_checkpointed_run_of_an_unpicklable_partial_is_refused(tmp_path):
    fn = functools.partial(locked_double, threading.Lock())
    with hm.Runtime(checkpoint=tmp_path / "run.h5") as rt:
        with pytest.raises(InvalidCall, match="cannot be pickled.*checkpoint"):
            rt.map(fn, [1, 2])
    with hm.Runtime() as rt:  # without a checkpoint the name only has to agree across ranks
        assert rt.map(fn, [1, 2]) == [2, 4]


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_checkpointed_run_of_an_unpicklable_op_is_refused(tmp_path, on_error):
    op = functools.partial(locked_add, threading.Lock())
    with hm.Runtime(checkpoint=tmp_path / "run.h5", on_error=on_error) as rt:
        with pytest.raises(InvalidCall, match="op's bound state cannot be pickled"):
            rt.map_reduce(total, [range(3), range(4)], op=op)
    with hm.Runtime(on_error=on_error) as rt:
        assert rt.map_reduce(total, [range(3), range(4)], op=op) == 3 + 6


def locked_add(lock, a, b):
    with lock:
        return a + b
