"""Unit tests of the kernel library (no MPI: kernels run under a fake context)."""

import functools
import hashlib
import importlib
import math
import os
import pickle
import random
import subprocess
import sys
import time

import numpy as np
import pytest

import hpcmicro
from hpcmicro.kernels import mandelbrot, synthetic, uts

# The module behind hpcmicro.context(), whatever its name, for a fake runtime.
_ctxmod = importlib.import_module(hpcmicro.context.__module__)

slow = pytest.mark.skipif(
    os.environ.get("HPCMICRO_SLOW") != "1", reason="slow; set HPCMICRO_SLOW=1 to run"
)


# --- a stand-in for the runtime: runs a spawn tree depth first on one rank ---


@pytest.fixture
def run_tree():
    """run_tree(kernel, payload, xp=np) -> list of (task_id, result) in spawn order."""

    def run(kernel, payload, xp=np):
        pending = []
        ctx = _ctxmod.TaskContext(0, 1, lambda cid, p, prio: pending.append((cid, p)), xp=xp)
        _ctxmod._set_current(ctx)
        try:
            out = []
            stack = [((), payload)]
            while stack:
                ctx.task_id, p = stack.pop()  # also starts the task's spawn count at 0
                out.append((ctx.task_id, kernel(p)))
                stack.extend(reversed(pending))
                pending.clear()
            return out
        finally:
            _ctxmod._set_current(None)

    return run


def test_kernels_do_not_import_mpi():
    code = (
        "import sys, hpcmicro.kernels, hpcmicro.kernels.uts, hpcmicro.kernels.mandelbrot, "
        "hpcmicro.kernels.synthetic; assert 'mpi4py' not in sys.modules, 'mpi4py imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- UTS ---------------------------------------------------------------------


def _sha1(data):
    return hashlib.sha1(data).digest()


def test_uts_rng_byte_layout():
    # rng_init: 16 zero bytes then the seed big-endian; rng_spawn: state + i big-endian.
    state, height = uts.root(uts.T1)
    assert height == 0
    assert state == _sha1(bytes(16) + bytes([0, 0, 0, 19]))
    assert uts.root(uts.DEFAULT)[0] == _sha1(bytes(20))
    kids = uts.children(uts.T1, uts.root(uts.T1))
    assert kids, "T1's root has children"
    for i, (cstate, cheight) in enumerate(kids):
        assert cheight == 1
        assert cstate == _sha1(state + bytes([0, 0, 0, i]))


def _independent_num_children(params, state, height):
    # A second, plain transcription of uts_numChildren for the fixed and binomial trees.
    r = ((state[16] << 24) | (state[17] << 16) | (state[18] << 8) | state[19]) & 0x7FFFFFFF
    u = r / 2147483648.0
    if params.tree_type == uts.BIN:
        if height == 0:
            return math.floor(params.b0)
        return params.m if u < params.q else 0
    assert params.shape == uts.FIXED
    if height >= params.gen_mx:
        return 0
    p = 1.0 / (1.0 + params.b0)
    return min(100, math.floor(math.log(1.0 - u) / math.log(1.0 - p)))


def _independent_count(params, state, height):
    # Recursion with its own RNG, against the library's iterative DFS.
    n = _independent_num_children(params, state, height)
    total = 1
    for i in range(n):
        total += _independent_count(params, _sha1(state + i.to_bytes(4, "big")), height + 1)
    return total


@pytest.mark.parametrize(
    "name, nodes, leaves, depth",
    [
        ("DEFAULT", 1732, 1050, 6),  # published: the reference's default tree
        ("SMALL_GEO", 3987, 3232, 5),
        ("SMALL_BIN", 13457, 11799, 68),
    ],
)
def test_uts_small_trees(name, nodes, leaves, depth):
    params = uts.PRESETS[name]
    assert uts.serial_stats(params) == (nodes, leaves, depth)
    assert uts.serial_count(params) == nodes


@pytest.mark.parametrize("name", ["SMALL_GEO", "SMALL_BIN"])
def test_uts_recursive_count_matches_iterative(name):
    params = uts.PRESETS[name]
    state, height = uts.root(params)
    assert _independent_count(params, state, height) == uts.serial_count(params)


def test_uts_children_deterministic_and_picklable():
    params = uts.SMALL_BIN
    node = uts.root(params)
    first = uts.children(params, node)
    assert len(first) == 200  # a binomial root has exactly floor(b0) children
    assert uts.children(params, node) == first
    for child in first[:5]:
        assert pickle.loads(pickle.dumps(child)) == child
        assert uts.children(params, child) == uts.children(params, pickle.loads(pickle.dumps(child)))
    assert pickle.loads(pickle.dumps(params)) == params


def test_uts_child_caps():
    huge = uts.UTSParams(tree_type=uts.GEO, shape=uts.FIXED, gen_mx=1, b0=1e6)
    assert uts.num_children(huge, uts.root(huge)) == 100  # MAXNUMCHILDREN
    assert uts.num_children(huge, (uts.root(huge)[0], 1)) == 0  # fixed shape stops at gen_mx
    wide_root = uts.UTSParams(tree_type=uts.BIN, b0=250.5, q=0.0)
    assert uts.num_children(wide_root, uts.root(wide_root)) == 250  # a binomial root is exempt


@pytest.mark.parametrize("name", ["DEFAULT", "SMALL_GEO", "SMALL_BIN"])
def test_uts_count_kernel_sums_to_node_count(run_tree, name):
    params = uts.PRESETS[name]
    kernel = pickle.loads(pickle.dumps(functools.partial(uts.count_kernel, params)))
    results = run_tree(kernel, uts.root(params))
    assert sum(r for _, r in results) == uts.serial_count(params)
    # task ids are unique paths; the longest is the tree's depth
    ids = [tid for tid, _ in results]
    assert len(set(ids)) == len(ids)
    assert max(map(len, ids)) == uts.serial_stats(params).max_depth


def test_uts_count_kernel_needs_a_runtime():
    with pytest.raises(RuntimeError):
        uts.count_kernel(uts.DEFAULT, uts.root(uts.DEFAULT))


# Published sizes.  T1 and T3 take about 3.5 s each here, so they always run;
# the other shapes (cyclic, hybrid, linear: 4-6 s each) only with HPCMICRO_SLOW=1.
@pytest.mark.parametrize(
    "name, nodes, leaves, depth",
    [
        ("T1", 4130071, 3305118, 10),
        ("T3", 4112897, 3599034, 1572),
        pytest.param("T2", 4117769, 2342762, 81, marks=slow),
        pytest.param("T4", 4132453, 3108986, 134, marks=slow),
        pytest.param("T5", 4147582, 2181318, 20, marks=slow),
    ],
)
def test_uts_published_trees(name, nodes, leaves, depth):
    assert uts.serial_stats(uts.PRESETS[name]) == (nodes, leaves, depth)


# --- Mandelbrot --------------------------------------------------------------


def test_mandelbrot_known_points():
    counts = mandelbrot.escape_counts([0, -2, -1, 0.25, 1j, 2 + 2j, 1, -2.5], 50)
    # inside (never escapes) -> max_iter; c=2+2j: |z_1| > 2 -> 1; c=1: 0,1,2,5 -> 3
    assert counts.tolist() == [50, 50, 50, 50, 50, 1, 3, 1]
    assert counts.dtype == np.int32


def test_mandelbrot_pixel_coordinates():
    p = mandelbrot.MandelbrotParams(width=4, height=4, max_iter=30, x_min=-2, x_max=2, y_min=-2, y_max=2)
    img = mandelbrot.serial_image(p)
    assert img.shape == (4, 4) and img.dtype == np.int32
    assert img[2, 2] == 30  # c = 0
    assert img[2, 0] == 30  # c = -2
    assert img[0, 0] == 1  # c = -2-2j
    assert img[2, 3] == 3  # c = 1


def test_mandelbrot_tiles_and_rows_match_serial(run_tree):
    p = mandelbrot.MandelbrotParams(width=53, height=37, max_iter=60)
    ref = mandelbrot.serial_image(p)
    tiles = [
        (slice(r, min(r + 8, p.height)), slice(c, min(c + 16, p.width)))
        for r in range(0, p.height, 8)
        for c in range(0, p.width, 16)
    ]
    out = np.full_like(ref, -1)
    for s in tiles:
        out[s] = mandelbrot.tile_kernel(p, s)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(mandelbrot.tile_kernel(p, (slice(None), slice(None))), ref)
    rows = np.stack([mandelbrot.row_kernel(p, y) for y in range(p.height)])
    np.testing.assert_array_equal(rows, ref)
    # a Range payload (a range of rows) gives that block of rows
    np.testing.assert_array_equal(mandelbrot.row_kernel(p, range(5, 12)), ref[5:12])
    np.testing.assert_array_equal(mandelbrot.row_kernel(p, np.int64(3)), ref[3])
    # under a runtime the kernel is picklable and gives the same row
    kernel = pickle.loads(pickle.dumps(functools.partial(mandelbrot.row_kernel, p)))
    np.testing.assert_array_equal(run_tree(kernel, 18)[0][1], ref[18])


def test_mandelbrot_uses_context_xp(run_tree):
    used = []

    class Spy:
        def __getattr__(self, name):
            used.append(name)
            return getattr(np, name)

    p = mandelbrot.MandelbrotParams(width=8, height=8, max_iter=10)
    (_, tile), = run_tree(functools.partial(mandelbrot.tile_kernel, p), (slice(0, 8), slice(0, 8)), xp=Spy())
    assert used, "tile_kernel ignored ctx.xp"
    np.testing.assert_array_equal(tile, mandelbrot.serial_image(p))


def test_mandelbrot_is_irregular():
    p = mandelbrot.MandelbrotParams(width=64, height=64, max_iter=100)
    img = mandelbrot.serial_image(p).astype(np.int64)
    # per-row work (iterations) through the middle dwarfs the edge rows
    assert img[32].sum() > 5 * img[0].sum()


# --- synthetic ---------------------------------------------------------------


def test_noop():
    assert synthetic.noop(123) is None
    assert synthetic.noop() is None


def test_spin_burns_cpu_and_sleep_does_not():
    t0, c0 = time.perf_counter(), time.thread_time()
    assert synthetic.spin(0.05) == 0.05
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    assert wall >= 0.05
    assert cpu > 0.01  # busy: it used the CPU (lenient: the machine may be oversubscribed)

    t0, c0 = time.perf_counter(), time.thread_time()
    assert synthetic.sleep_task(0.05) == 0.05
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    assert wall >= 0.05
    assert cpu < 0.02


def test_heavy_tailed_durations():
    d = synthetic.heavy_tailed_durations(10000, 0.002, seed=5)
    assert len(d) == 10000 and all(isinstance(x, float) and x > 0 for x in d)
    assert d == synthetic.heavy_tailed_durations(10000, 0.002, seed=5)
    assert d != synthetic.heavy_tailed_durations(10000, 0.002, seed=6)
    assert math.isclose(math.fsum(d) / len(d), 0.002, rel_tol=1e-9)
    assert max(d) <= synthetic.DEFAULT_MAX_RATIO * 0.002 * (1 + 1e-12)
    assert max(d) / float(np.median(d)) > 20  # heavy tail
    small = synthetic.heavy_tailed_durations(3, 1.0, seed=0, alpha=2.5, max_ratio=1.5)
    assert math.isclose(sum(small), 3.0) and max(small) <= 1.5 + 1e-12
    assert synthetic.heavy_tailed_durations(0, 1.0, seed=0) == []
    with pytest.raises(ValueError):
        synthetic.heavy_tailed_durations(5, 1.0, seed=0, max_ratio=1.0)


def _pairwise(v):
    while len(v) > 1:
        v = [v[i] + v[i + 1] if i + 1 < len(v) else v[i] for i in range(0, len(v), 2)]
    return v[0]


def test_order_sensitive_values():
    v = [synthetic.order_sensitive_value(i) for i in range(1000)]
    assert v == [synthetic.order_sensitive_value(i) for i in range(1000)]
    mags = [abs(x) for x in v]
    assert max(mags) / min(mags) > 2.0**30
    for n in (16, 64, 1000):
        fwd = sum(v[:n])
        assert sum(reversed(v[:n])) != fwd
        assert _pairwise(v[:n]) != fwd
    rnd = random.Random(0)
    changed = 0
    for _ in range(50):
        w = v[:64]
        rnd.shuffle(w)
        changed += sum(w) != sum(v[:64])
        assert math.isclose(math.fsum(w), math.fsum(v[:64]))
    assert changed >= 45
