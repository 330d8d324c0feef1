"""The GPU-ready kernel library: montecarlo, gemm, nbody, hdf5_transform, Batched.

CPU tests always run.  The CuPy tests (CPU/GPU agreement) run only where
cupy imports and sees a device.  ``python this_file.py job DIR`` is the
multi-rank job (run under ``mpiexec -n 3`` and as plain python by the tests).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hpcmicro.kernels import gemm, hdf5_transform, montecarlo, nbody
from hpcmicro.kernels.batched import Batched, batch_form, to_host
from hpcmicro.kernels.gemm import GemmParams
from hpcmicro.kernels.hdf5_transform import TransformParams
from hpcmicro.kernels.montecarlo import MCParams
from hpcmicro.kernels.nbody import NBodyParams

# Random123 tests/kat_vectors (github.com/DEShawResearch/random123): rounds, counter, key, expected.
PHILOX4X32_KAT = [
    (10, (0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    (10, (0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (10, (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    (7, (0, 0, 0, 0), (0, 0), (0x5F6FB709, 0x0D893F64, 0x4F121F81, 0x4F730A48)),
    (7, (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0x4DFCCABA, 0x190A87F0, 0xC47362BA, 0xB6B5242A)),
]

# Documented tolerances (docs/kernels.md).
GEMM_RTOL = 1e-12  # |C - A@B| <= GEMM_RTOL * (|A| @ |B|)
NBODY_RTOL = 1e-12  # |F - direct| <= NBODY_RTOL * (same sum of absolute terms)
GPU_TRANSCENDENTAL_RTOL = 1e-12  # sums of exp values, CPU vs GPU
GPU_ELEMENTWISE_RTOL = 1e-14  # element-wise results using sin/exp, CPU vs GPU (a few ulps)


def gauss_integral_1d():
    return math.sqrt(math.pi) / 2 * math.erf(1.0)


# --- montecarlo: the generator ---------------------------------------------------------


@pytest.mark.parametrize("rounds, counter, key, expected", PHILOX4X32_KAT)
def test_philox_known_answers(rounds, counter, key, expected):
    out = montecarlo.philox4x32(counter, key, rounds=rounds)
    assert tuple(int(w) for w in out) == expected


def test_philox_vectorized_equals_scalar():
    rng = np.random.default_rng(1)
    ctr = rng.integers(0, 2**32, size=(4, 50), dtype=np.uint64)
    key = rng.integers(0, 2**32, size=(2, 50), dtype=np.uint64)
    vec = np.stack(montecarlo.philox4x32(tuple(ctr), tuple(key)))
    for i in range(50):
        one = montecarlo.philox4x32(tuple(int(c) for c in ctr[:, i]), tuple(int(k) for k in key[:, i]))
        assert [int(w) for w in one] == vec[:, i].tolist()
    assert vec.max() < 2**32


def test_stream_is_uniform():
    n = 1 << 18
    j = np.arange(n, dtype=np.uint64)
    w = montecarlo.philox4x32((j, 0, 0, 9), (5, 11))
    u = montecarlo.uniform53(w[0], w[1])
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 5 / math.sqrt(12 * n)  # 5 sigma
    bins = 256
    counts = np.bincount((u * bins).astype(int), minlength=bins)
    chi2 = ((counts - n / bins) ** 2 / (n / bins)).sum()
    dof = bins - 1
    assert chi2 < dof + 6 * math.sqrt(2 * dof), chi2  # about a 1e-7 false-alarm rate
    # every bit of every word is a fair coin
    for word in w:
        ones = np.unpackbits(word.astype("<u4").view(np.uint8)).reshape(n, 32).mean(axis=0)
        assert np.all(np.abs(ones - 0.5) < 5 * 0.5 / math.sqrt(n))


def test_streams_of_tasks_differ_and_do_not_correlate():
    a = montecarlo.uniform53(*montecarlo.philox4x32((np.arange(1 << 14, dtype=np.uint64), 0, 0, 1), (0, 3))[:2])
    b = montecarlo.uniform53(*montecarlo.philox4x32((np.arange(1 << 14, dtype=np.uint64), 0, 0, 1), (1, 3))[:2])
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(1 << 14)


def test_tree_sum():
    x = np.random.default_rng(2).normal(size=(3, 1001))
    np.testing.assert_allclose(montecarlo.tree_sum(x), x.sum(axis=1), rtol=1e-13)
    assert montecarlo.tree_sum(x[1:2])[0] == montecarlo.tree_sum(x)[1]  # rows independent
    assert montecarlo.tree_sum(np.zeros((2, 0))).tolist() == [0.0, 0.0]
    assert montecarlo.tree_sum(np.arange(7.0)) == 21.0


# --- montecarlo: kernels ------------------------------------------------------------------


def test_pi_hits_estimates_pi():
    p = MCParams(samples=1 << 16, seed=3)
    hits = sum(montecarlo.pi_hits(p, i) for i in range(8))
    n = 8 * p.samples
    sigma = 4 * math.sqrt((math.pi / 4) * (1 - math.pi / 4) / n)
    assert abs(montecarlo.pi_estimate(p, 8, hits) - math.pi) < 5 * sigma
    assert isinstance(hits, int)


def test_pi_hits_is_the_documented_stream(monkeypatch):
    # Chunking is invisible: recompute from philox directly, unchunked.
    monkeypatch.setattr(montecarlo, "CHUNK", 1000)
    p = MCParams(samples=2500, seed=17)
    j = np.arange(p.samples, dtype=np.uint64)
    w0, w1, _, _ = montecarlo.philox4x32((j, 0, 0, montecarlo.TAG_PI), (6, 17))
    x, y = (w0 >> np.uint64(1)).astype(object), (w1 >> np.uint64(1)).astype(object)  # exact Python ints
    assert montecarlo.pi_hits(p, 6) == int(sum(x * x + y * y < 2**62))


def test_pi_range_payload_and_batch():
    p = MCParams(samples=3000, seed=1)
    singles = [montecarlo.pi_hits(p, i) for i in range(7)]
    assert montecarlo.pi_hits(p, range(2, 6)) == sum(singles[2:6])
    payloads = [3, range(0, 4), 6, range(4, 7), range(5, 5)]
    assert montecarlo.pi_hits_batch(p, payloads) == [montecarlo.pi_hits(p, q) for q in payloads]
    assert montecarlo.pi_hits(p, range(5, 5)) == 0
    with pytest.raises(ValueError):
        montecarlo.pi_hits(p, -1)


@pytest.mark.parametrize("func, lower, upper, exact", [
    ("gauss", (0.0,), (1.0,), gauss_integral_1d()),
    ("gauss", (0.0,) * 3, (1.0,) * 3, gauss_integral_1d() ** 3),
    ("sum_squares", (-1.0, 0.0), (2.0, 1.0), 4.0),
])
def test_integrate_matches_analytic(func, lower, upper, exact):
    p = MCParams(samples=1 << 15, seed=4, func=func, lower=lower, upper=upper)
    total = sum(montecarlo.integrate(p, i) for i in range(6))
    value, err = montecarlo.estimate(p, 6, total)
    assert err > 0 and abs(value - exact) < 5 * err, (value, exact, err)


def test_integrate_batch_is_bitwise_identical():
    p = MCParams(samples=5000, seed=9, func="gauss", lower=(0.0, -1.0, 0.5), upper=(1.0, 1.0, 2.0))
    payloads = [0, range(1, 4), 7, range(2, 3), 5]
    batch = montecarlo.integrate_batch(p, payloads)
    for q, b in zip(payloads, batch):
        one = montecarlo.integrate(p, q)
        assert isinstance(one, np.ndarray) and one.shape == (2,)
        assert one.tobytes() == b.tobytes()
    # a range payload is its tasks' values combined
    parts = [montecarlo.integrate(p, i) for i in range(1, 4)]
    np.testing.assert_allclose(montecarlo.integrate(p, range(1, 4)), sum(parts), rtol=1e-14)


def test_params_checked():
    with pytest.raises(ValueError):
        MCParams(func="nope")
    with pytest.raises(ValueError):
        MCParams(lower=(0.0,), upper=(1.0, 1.0))
    with pytest.raises(ValueError):
        MCParams(samples=0)


# --- Batched --------------------------------------------------------------------------------


def test_batched_wrapper_pickles_and_runs():
    p = MCParams(samples=500, seed=2)
    k = montecarlo.pi_kernel(p)
    k2 = pickle.loads(pickle.dumps(k))
    assert k2(3) == k(3) == montecarlo.pi_hits(p, 3)
    assert k2.batch([1, 2]) == [montecarlo.pi_hits(p, 1), montecarlo.pi_hits(p, 2)]
    assert batch_form(k) == k.batch
    assert repr(k) == repr(k2) and " at 0x" not in repr(k)
    assert repr(montecarlo.pi_kernel(MCParams(samples=501, seed=2))) != repr(k)  # params tell kernels apart
    # partial of a function with a .batch of the same leading arguments
    b = batch_form(functools.partial(nbody.force_block, NBodyParams(n=10, block=4)))
    assert len(b([(0, 1), (2, 2)])) == 2
    assert batch_form(functools.partial(gemm.gemm_block, GemmParams())) is None
    assert batch_form(len) is None
    with pytest.raises(ValueError, match="0 results for 1 payloads"):
        Batched(len, lambda ps: []).batch([[1]])
    with pytest.raises(TypeError):
        Batched(len, None)
    with pytest.raises(ValueError):
        Batched(len, len, max_batch=0)
    assert k2.max_batch == k.max_batch == (1 << 23) // 500
    assert montecarlo.pi_kernel(MCParams(samples=1 << 20)).max_batch == (1 << 23) // montecarlo.CHUNK
    assert nbody.force_kernel(NBodyParams(n=1000, block=100)).max_batch == (1 << 23) // 13000


def test_batched_kernels_in_a_runtime_describe_their_params():
    from hpcmicro.runtime import describe_callable

    a = describe_callable(montecarlo.pi_kernel(MCParams(seed=1)))
    b = describe_callable(montecarlo.pi_kernel(MCParams(seed=2)))
    assert a != b and "pi_hits" in a


def test_kernel_modules_import_only_numpy():
    code = ("import sys; import hpcmicro.kernels.montecarlo, hpcmicro.kernels.gemm, hpcmicro.kernels.nbody, "
            "hpcmicro.kernels.hdf5_transform, hpcmicro.kernels.batched; "
            "bad = [m for m in ('mpi4py', 'cupy', 'h5py') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- gemm -------------------------------------------------------------------------------------


def gemm_error_ok(c, a, b, rtol=GEMM_RTOL):
    bound = rtol * (np.abs(a) @ np.abs(b))
    return np.all(np.abs(c - a @ b) <= bound)


def test_gemm_blocks_assemble_to_a_at_b():
    p = GemmParams(m=130, n=75, k=90, block_m=32, block_n=20, seed=5)
    a, b = gemm.matrices(p)
    assert a.shape == (130, 90) and b.shape == (90, 75)
    assert -1 <= a.min() and a.max() < 1 and abs(a.mean()) < 0.05
    c = gemm.assemble(p, [gemm.gemm_block(p, t) for t in gemm.tasks(p)])
    assert gemm_error_ok(c, a, b)
    # the hm.Blocks payloads give the same blocks
    blk = gemm.blocks(p)
    assert len(blk) == len(gemm.tasks(p))
    c2 = gemm.assemble(p, [gemm.gemm_block(p, s) for s in blk], list(blk))
    assert np.array_equal(c, c2)


def test_gemm_operands_are_generated_per_row():
    p = GemmParams(m=40, n=30, k=17, seed=8)
    a, b = gemm.matrices(p)
    assert np.array_equal(gemm.operand_rows(p, 0, range(5, 9)), a[5:9])
    assert np.array_equal(gemm.operand_rows(p, 1, range(29, 30)), b[:, 29:30].T)
    assert not np.array_equal(gemm.matrices(GemmParams(m=40, n=30, k=17, seed=9))[0], a)
    with pytest.raises(ValueError):
        gemm.gemm_block(p, (2, 0))  # 40 rows / 128 = one block row


# --- nbody ----------------------------------------------------------------------------------------


def test_nbody_blocks_sum_to_direct_forces():
    p = NBodyParams(n=150, block=40, seed=3, softening=0.05)
    results = [nbody.force_block(p, t) for t in nbody.tasks(p)]
    for (i, _), r in zip(nbody.tasks(p), results):
        rows = np.zeros(p.n, bool)
        rows[i * p.block:(i + 1) * p.block] = True
        assert r.shape == (p.n, 3) and not r[~rows].any()
    total = sum(results)
    scale = nbody.direct_forces(p, absolute=True)
    assert np.all(np.abs(total - nbody.direct_forces(p)) <= NBODY_RTOL * scale)
    # Newton's third law: the forces cancel
    assert np.all(np.abs(total.sum(axis=0)) <= NBODY_RTOL * scale.sum(axis=0))


def test_nbody_batch_is_bitwise_identical():
    p = NBodyParams(n=70, block=16, seed=4)
    payloads = [(4, 0), (0, 0), (1, 4), (4, 4), (2, 3)]  # block 4 is the short edge block
    batch = nbody.force_block_batch(p, payloads)
    for q, b in zip(payloads, batch):
        assert nbody.force_block(p, q).tobytes() == b.tobytes()


def test_nbody_particles():
    p = NBodyParams(n=50, seed=1)
    pos, m = nbody.particles(p, range(50))
    assert pos.shape == (50, 3) and np.all((0 <= pos) & (pos < 1)) and np.all((0.5 <= m) & (m < 1.5))
    pos2, m2 = nbody.particles(p, range(20, 30))
    assert np.array_equal(pos2, pos[20:30]) and np.array_equal(m2, m[20:30])


# --- hdf5_transform --------------------------------------------------------------------------------


def make_input(path, shape=(45, 33), chunks=(16, 10), dtype="f8"):
    import h5py

    x = np.random.default_rng(0).normal(size=shape) * 4
    with h5py.File(path, "w") as f:
        f.create_dataset("group/x", data=x.astype(dtype), chunks=chunks)
    os.chmod(path, 0o444)  # inputs are only ever read
    return x.astype(dtype)


def read(path, name):
    import h5py

    with h5py.File(path, "r") as f:
        return f[name].is_virtual, f[name][...]


def test_hdf5_transform_plain_calls(tmp_path):
    make_input(tmp_path / "in.h5")
    out = tmp_path / "out" / "y.h5"
    out.parent.mkdir()
    p = TransformParams(str(tmp_path / "in.h5"), "group/x", str(out))
    records = [hdf5_transform.transform(p, s) for s in hdf5_transform.tasks(p)]
    assert len(records) == 3 * 4
    assert hdf5_transform.finalize(p, records) == str(out)
    virtual, y = read(out, "group/x")
    assert virtual
    np.testing.assert_allclose(y, hdf5_transform.reference(p), rtol=1e-15, atol=0)
    # the output folder moves with its parts (the virtual dataset names them relative to it)
    assert sorted(os.listdir(out.parent)) == ["y.h5", "y.h5.parts"]
    os.rename(out.parent, tmp_path / "moved")
    assert np.array_equal(read(tmp_path / "moved" / "y.h5", "group/x")[1], y)


def test_hdf5_transform_batch_equals_single_and_materialize(tmp_path):
    x = make_input(tmp_path / "in.h5", dtype="i4")
    chunks = list(hdf5_transform.tasks(TransformParams(str(tmp_path / "in.h5"), "group/x", "unused")))
    outs = []
    for name, run in [("one", lambda p: [hdf5_transform.transform(p, s) for s in chunks]),
                      ("batch", lambda p: hdf5_transform.transform_batch(p, chunks))]:
        p = TransformParams(str(tmp_path / "in.h5"), "group/x", str(tmp_path / f"{name}.h5"),
                            func="scale", args=(0.5, -1.0), out_dataset="y")
        records = run(p)
        assert [r[1] for r in records] == chunks
        hdf5_transform.finalize(p, records, materialize=True)
        assert not (tmp_path / f"{name}.h5.parts").exists()
        virtual, y = read(tmp_path / f"{name}.h5", "y")
        assert not virtual
        outs.append(y)
    assert outs[0].tobytes() == outs[1].tobytes()
    assert np.array_equal(outs[0], 0.5 * x.astype(float) - 1.0)


def test_hdf5_sqrt_sin_batch_bitwise(tmp_path):
    make_input(tmp_path / "in.h5")
    res = {}
    for name in ("one", "batch"):
        p = TransformParams(str(tmp_path / "in.h5"), "group/x", str(tmp_path / f"{name}.h5"))
        chunks = list(hdf5_transform.tasks(p))
        recs = (hdf5_transform.transform_batch(p, chunks) if name == "batch"
                else [hdf5_transform.transform(p, s) for s in chunks])
        hdf5_transform.finalize(p, recs)
        res[name] = read(tmp_path / f"{name}.h5", "group/x")[1]
    assert res["one"].tobytes() == res["batch"].tobytes()


def test_hdf5_finalize_checks_coverage(tmp_path):
    make_input(tmp_path / "in.h5")
    p = TransformParams(str(tmp_path / "in.h5"), "group/x", str(tmp_path / "o.h5"))
    records = [hdf5_transform.transform(p, s) for s in hdf5_transform.tasks(p)]
    with pytest.raises(ValueError, match="cover"):
        hdf5_transform.finalize(p, records[:-1])
    with pytest.raises(ValueError, match="cover"):
        hdf5_transform.finalize(p, records + records[:1])


def test_hdf5_contiguous_input_needs_a_block(tmp_path):
    import h5py

    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["x"] = np.arange(20.0)
    p = TransformParams(str(tmp_path / "c.h5"), "x", str(tmp_path / "o.h5"))
    with pytest.raises(ValueError, match="not chunked"):
        hdf5_transform.tasks(p)
    p = TransformParams(str(tmp_path / "c.h5"), "x", str(tmp_path / "o.h5"), func="scale", args=(3.0,), block=(6,))
    hdf5_transform.finalize(p, [hdf5_transform.transform(p, s) for s in hdf5_transform.tasks(p)])
    assert np.array_equal(read(tmp_path / "o.h5", "x")[1], 3.0 * np.arange(20.0))


# --- the runtime, one rank in-process and three under mpiexec ---------------------------------------


def _job(workdir: str) -> None:
    """Every kernel through hm.Runtime; rank 0 saves the results and reports."""
    import hpcmicro as hm

    wd = Path(workdir)
    with hm.Runtime() as rt:
        mp = MCParams(samples=3000, seed=7)
        hits = rt.map_reduce(montecarlo.pi_kernel(mp), hm.Range(12, 5))
        tiny = rt.map(montecarlo.pi_kernel(MCParams(samples=200, seed=7)), list(range(60)))
        batches = sum(w.get("batches", 0) for w in rt.stats.workers)
        ip = MCParams(samples=2000, seed=7, func="gauss", lower=(0.0, 0.0), upper=(1.0, 2.0))
        sums = rt.map_reduce(functools.partial(montecarlo.integrate, ip), list(range(9)))
        np_ = NBodyParams(n=90, block=32, seed=2)
        forces = rt.map_reduce(nbody.force_kernel(np_), nbody.tasks(np_))
        gp = GemmParams(m=70, n=50, k=30, block_m=32, block_n=16, seed=1)
        blocks = rt.map(functools.partial(gemm.gemm_block, gp), gemm.blocks(gp))
        tp = TransformParams(str(wd / "in.h5"), "group/x", str(wd / "out.h5"))
        records = rt.map(hdf5_transform.transform_kernel(tp), hdf5_transform.tasks(tp))
        if rt.is_master:
            hdf5_transform.finalize(tp, records)
            c = gemm.assemble(gp, blocks, list(gemm.blocks(gp)))
            np.savez(wd / "results.npz", sums=sums, forces=forces, c=c)
            digest = hashlib.sha256(b"".join(a.tobytes() for a in (sums, forces, c))).hexdigest()
            print(json.dumps({"rank": 0, "size": rt.size, "hits": hits, "digest": digest, "tiny": tiny,
                              "batches": batches,
                              "parts": sorted({r[0] for r in records})}), flush=True)


def _run_job(tmp_path, ranks):
    from tests.mpirun import mpiexec, run_command

    make_input(tmp_path / "in.h5")
    argv = [sys.executable, __file__, "job", str(tmp_path)]
    if ranks > 1:
        argv = [mpiexec(), "-n", str(ranks)] + argv
    run = run_command(argv, timeout=180)
    assert run.returncode == 0, str(run)
    return run.report()


def _check_job(tmp_path, report):
    mp = MCParams(samples=3000, seed=7)
    assert report["hits"] == sum(montecarlo.pi_hits(mp, i) for i in range(12))
    assert report["tiny"] == [montecarlo.pi_hits(MCParams(samples=200, seed=7), i) for i in range(60)]
    res = np.load(tmp_path / "results.npz")
    ip = MCParams(samples=2000, seed=7, func="gauss", lower=(0.0, 0.0), upper=(1.0, 2.0))
    np.testing.assert_allclose(res["sums"], sum(montecarlo.integrate(ip, i) for i in range(9)), rtol=1e-14)
    np_ = NBodyParams(n=90, block=32, seed=2)
    assert np.all(np.abs(res["forces"] - nbody.direct_forces(np_)) <= NBODY_RTOL * nbody.direct_forces(np_, True))
    a, b = gemm.matrices(GemmParams(m=70, n=50, k=30, block_m=32, block_n=16, seed=1))
    assert gemm_error_ok(res["c"], a, b)
    virtual, y = read(tmp_path / "out.h5", "group/x")
    tp = TransformParams(str(tmp_path / "in.h5"), "group/x", str(tmp_path / "out.h5"))
    assert virtual
    np.testing.assert_allclose(y, hdf5_transform.reference(tp), rtol=1e-15, atol=0)


@pytest.fixture(scope="module")
def one_rank_report(tmp_path_factory):
    path = tmp_path_factory.mktemp("job1")
    return path, _run_job(path, 1)


def test_job_in_plain_python(one_rank_report):
    path, report = one_rank_report
    # One worker (id 1, as if it were rank 1 of a job whose rank 0 is the master) wrote one part.
    assert report["size"] == 1 and report["parts"] == ["out.h5.parts/part-00001.h5"]
    _check_job(path, report)


def test_job_under_mpiexec_3_matches_one_rank(tmp_path, one_rank_report):
    report = _run_job(tmp_path, 3)
    assert report["size"] == 3
    assert set(report["parts"]) <= {"out.h5.parts/part-00001.h5", "out.h5.parts/part-00002.h5"}
    _check_job(tmp_path, report)
    # the reductions are bitwise the same for any rank count
    assert report["digest"] == one_rank_report[1]["digest"]


# --- CuPy: CPU/GPU agreement ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cp():
    cupy = pytest.importorskip("cupy", reason="cupy is not installed: no CPU/GPU agreement tests")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, no runtime
        pytest.skip(f"cupy has no usable CUDA device: {exc}")
    if n == 0:
        pytest.skip("cupy sees no CUDA device")
    return cupy


def test_gpu_philox_and_uniforms_bitwise(cp):
    for rounds, counter, key, expected in PHILOX4X32_KAT:
        assert tuple(int(w) for w in montecarlo.philox4x32(counter, key, cp, rounds)) == expected
    j = np.arange(1 << 16, dtype=np.uint64)
    cpu = montecarlo.philox4x32((j, 3, 0, 1), (7, 8))
    gpu = montecarlo.philox4x32((cp.asarray(j), 3, 0, 1), (7, 8), cp)
    for a, b in zip(cpu, gpu):
        assert np.array_equal(a, b.get())
    assert montecarlo.uniform53(*cpu[:2]).tobytes() == montecarlo.uniform53(*gpu[:2], cp).get().tobytes()


def test_gpu_montecarlo(cp):
    p = MCParams(samples=70000, seed=5)  # two chunks
    payloads = [0, range(1, 5), 9]
    assert montecarlo._pi_hits_batch_impl(p, payloads, cp) == montecarlo._pi_hits_batch_impl(p, payloads, np)
    assert montecarlo._pi_hits_impl(p, 3, cp) == montecarlo._pi_hits_impl(p, 3, np)
    # only correctly rounded operations: bit-identical
    q = MCParams(samples=70000, seed=5, func="sum_squares", lower=(0.0, -1.0), upper=(1.0, 3.0))
    assert (montecarlo._integrate_impl(q, range(3), cp).tobytes()
            == montecarlo._integrate_impl(q, range(3), np).tobytes())
    # exp may differ by an ulp per point
    g = MCParams(samples=70000, seed=5, func="gauss", lower=(0.0,) * 3, upper=(1.0,) * 3)
    gpu = montecarlo._integrate_batch_impl(g, payloads, cp)
    cpu = montecarlo._integrate_batch_impl(g, payloads, np)
    for a, b in zip(gpu, cpu):
        np.testing.assert_allclose(a, b, rtol=GPU_TRANSCENDENTAL_RTOL)
    assert [x.tobytes() for x in gpu] == [montecarlo._integrate_impl(g, q, cp).tobytes() for q in payloads]


def test_gpu_gemm(cp):
    p = GemmParams(m=300, n=260, k=200, block_m=128, block_n=100, seed=2)
    a, b = gemm.matrices(p)
    ga, gb = gemm.matrices(p, cp)
    assert np.array_equal(a, ga.get()) and np.array_equal(b, gb.get())
    c = gemm.assemble(p, [gemm._impl(p, t, cp) for t in gemm.tasks(p)])
    assert gemm_error_ok(c, a, b)


def test_gpu_nbody_bitwise(cp):
    p = NBodyParams(n=200, block=64, seed=6)
    payloads = nbody.tasks(p)
    gpu = nbody._batch_impl(p, payloads, cp)
    for q, g in zip(payloads, gpu):
        cpu = nbody._impl(p, q, np)
        assert cpu.tobytes() == g.get().tobytes()
        assert nbody._impl(p, q, cp).get().tobytes() == cpu.tobytes()


def test_gpu_hdf5_transform(cp, tmp_path):
    make_input(tmp_path / "in.h5")
    out = {}
    for name, xp in (("cpu", np), ("gpu", cp)):
        p = TransformParams(str(tmp_path / "in.h5"), "group/x", str(tmp_path / f"{name}.h5"))
        chunks = list(hdf5_transform.tasks(p))
        hdf5_transform.finalize(p, hdf5_transform._batch_impl(p, chunks, xp))
        out[name] = read(tmp_path / f"{name}.h5", "group/x")[1]
    # sqrt and abs are exact, sin differs by up to 2 ulps (CUDA's bound): a few ulps in all
    np.testing.assert_allclose(out["gpu"], out["cpu"], rtol=GPU_ELEMENTWISE_RTOL, atol=0)
    assert to_host(hdf5_transform.FUNCTIONS["scale"](cp.arange(5.0), cp, 2.0, 1.0)).tolist() == [1, 3, 5, 7, 9]


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "job":
    _job(sys.argv[2])
