"""codehash: every edit that changes what a kernel computes changes exactly the part that names it."""

import functools
import os
import subprocess
import sys
import types

import numpy as np

from hpcmicro.kernels.batched import Batched
from hpcmicro.codehash import code_parts, describe_changes

BASE = '''
import functools
import numpy as np
SCALE = 2
TABLE = np.arange(100_000)
LABELS = {"a", "b", "c"}
def helper(x):
    return x * SCALE
class Model:
    def f(self, x):
        return x + 1
def make(k):
    def inner(r):
        return r * k
    return inner
def apply(fn, r):
    return fn(r)
def fact(n):
    return 1 if n <= 1 else n * fact(n - 1)
def kern(r, offset=3):
    squares = [i * i for i in range(r)]
    pick = lambda v: v + 7
    return helper(r) + TABLE[r] + pick(sum(squares)) + Model().f(r) + offset + ("a" in LABELS) + fact(3)
def batch(rs):
    return [kern(r) for r in rs]
'''


def module(source=BASE, name="usermod"):
    """``source`` as a module defined in a user's file (outside site-packages)."""
    mod = types.ModuleType(name)
    exec(compile(source, f"/home/user/{name}.py", "exec"), mod.__dict__)
    return mod


def changed(edit_from, edit_to, pick=lambda m: m.kern):
    assert edit_from in BASE
    before = code_parts("kernel", pick(module()))
    after = code_parts("kernel", pick(module(BASE.replace(edit_from, edit_to))))
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def test_same_source_gives_the_same_parts_and_covers_what_the_kernel_reads():
    parts = code_parts("kernel", module().kern)
    assert parts == code_parts("kernel", module().kern)
    for key in ("code of usermod.kern", "code of usermod.helper", "code of usermod.Model.f",
                "code of usermod.fact", "global usermod.SCALE", "global usermod.TABLE",
                "global usermod.LABELS", "default arguments of usermod.kern", "python version"):
        assert f"kernel: {key}" in parts, key
    assert not any("np" in k.split(".")[-1] for k in parts)  # modules are not hashed as values


def test_each_edit_changes_exactly_its_part():
    assert changed("return x * SCALE", "return x * SCALE * 1") == ["kernel: code of usermod.helper"]
    assert changed("SCALE = 2", "SCALE = 3") == ["kernel: global usermod.SCALE"]
    assert changed("return x + 1", "return x + 2") == ["kernel: code of usermod.Model.f"]
    assert changed("offset=3", "offset=4") == ["kernel: default arguments of usermod.kern"]
    assert changed('{"a", "b", "c"}', '{"a", "b", "d"}') == ["kernel: global usermod.LABELS"]
    # inside a comprehension and a lambda: nested code objects
    assert changed("i * i for", "i * i * 1 for") == ["kernel: code of usermod.kern"]
    assert changed("v + 7", "v + 8") == ["kernel: code of usermod.kern"]
    # one element in the middle of a large array (its repr would be truncated)
    assert changed("TABLE = np.arange(100_000)", "TABLE = np.arange(100_000); TABLE[50_000] = -1") \
        == ["kernel: global usermod.TABLE"]


def test_moving_code_or_renaming_nothing_is_not_a_change():
    assert changed("def helper(x):", "\n\n# moved down\ndef helper(x):") == []
    assert changed("LABELS = ", "UNUSED = 5\nLABELS = ") == []  # a global the kernel does not read


def test_closures_partials_and_callable_objects_are_followed():
    # a captured value
    assert code_parts("kernel", module().make(2)) != code_parts("kernel", module().make(3))
    key = "kernel: captured variable k of usermod.make.<locals>.inner"
    assert key in code_parts("kernel", module().make(2))
    # a function bound into a partial
    bound = lambda m: functools.partial(m.apply, m.helper)  # noqa: E731
    assert changed("return x * SCALE", "return x - SCALE", bound) == ["kernel: code of usermod.helper"]
    # both callables of a Batched kernel
    batched = lambda m: Batched(m.kern, m.batch)  # noqa: E731
    assert changed("return [kern(r) for r in rs]", "return [kern(r) + 0 for r in rs]", batched) \
        == ["kernel: code of usermod.batch"]


def test_recursion_terminates_and_library_code_is_named_not_walked():
    parts = code_parts("kernel", module().fact)
    assert sorted(parts) == ["kernel: code of usermod.fact", "kernel: python version"]
    assert sorted(code_parts("kernel", np.sum)) == ["kernel: python version"]
    assert sorted(code_parts("kernel", os.path.join)) == ["kernel: python version"]  # stdlib Python code


def test_digests_survive_warm_up_and_other_hash_seeds():
    mod = module()
    before = code_parts("kernel", mod.kern)
    for r in range(3000):  # the interpreter specializes hot bytecode in place
        mod.kern(r % 50)
    assert code_parts("kernel", mod.kern) == before
    script = (f"import sys, types; sys.path.insert(0, {os.getcwd()!r})\n"
              "from tests.unit.test_codehash import module\n"
              "from hpcmicro.codehash import code_parts\n"
              "print(sorted(code_parts('kernel', module().kern).items()))")
    outputs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                              env=dict(os.environ, PYTHONHASHSEED=str(seed))).stdout for seed in (1, 2, 3)}
    assert len(outputs) == 1 and "usermod.LABELS" in outputs.pop()


def test_describe_changes_names_what_changed_appeared_and_went():
    old = {"kernel: code of m.f": "1", "kernel: global m.A": "x", "kernel: python version": "3.11"}
    new = {"kernel: code of m.f": "2", "kernel: global m.B": "y", "kernel: python version": "3.12"}
    text = describe_changes(old, new)
    assert "kernel: code of m.f changed" in text
    assert "kernel: global m.B is new" in text and "kernel: global m.A is gone" in text
    assert "kernel: python version 3.11 -> 3.12" in text
    assert describe_changes(old, old) == "nothing"
