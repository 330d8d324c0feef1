"""Result delivery on real ranks. Run as ``mpiexec -n N python delivery_script.py CASE``.

Every rank computes the expected values itself, from the same seeds
(``expected``), and compares what it was delivered with them; each rank
prints one JSON line: ``{"rank": r, "case": ..., "ok": bool, "problems": [...]}``.
An escaping exception aborts the job (Runtime's abort_on_error), so a broken
case fails fast rather than hangs; the test adds a timeout on top.
"""

from __future__ import annotations

import json
import pickle
import sys
import threading

import numpy as np

import hpcmicro as hm
from hpcmicro.mpi import collectives

MB = 1_000_000
STRUCT = np.dtype([("id", "<i4"), ("pos", "<f8", (3,)), ("tag", "S4")])


def emit(rank, **fields):
    print(json.dumps({"rank": rank, **fields}), flush=True)


# -- the values (module level: every rank has the kernels, nothing is pickled) ----------

def big_array(i):
    """1 MB of float64 from seed ``i``."""
    return np.random.default_rng(i).random(MB // 8)


def mixed_value(i):
    """Value ``i`` of the mixed list: arrays of many kinds, Python objects, nests."""
    rng = np.random.default_rng(1000 + i)
    kind = i % 14
    if kind == 0:
        return rng.random(7) > 0.5  # bool
    if kind == 1:
        return rng.integers(-128, 127, size=(5, 3), dtype=np.int8)
    if kind == 2:
        return rng.random(6) + 1j * rng.random(6)  # complex128
    if kind == 3:
        a = np.zeros(4, STRUCT)
        a["id"], a["pos"], a["tag"] = np.arange(4), rng.random((4, 3)), [b"ab", b"cd", b"ef", b"gh"]
        return a
    if kind == 4:
        return np.array(rng.random())  # 0-d
    if kind == 5:
        return np.empty((0, 3), np.float32)  # 0-size
    if kind == 6:
        return np.asfortranarray(rng.random((40, 30)))  # Fortran order, 9.6 KB
    if kind == 7:
        return rng.random((20, 20))[::2, 1::3]  # a non-contiguous slice
    if kind == 8:
        return np.array([1, "two", (3.0,), None], dtype=object)
    if kind == 9:
        return {"name": f"task{i}", "n": i, "x": float(rng.random()), "none": None, "set": frozenset({i, 2 * i})}
    if kind == 10:
        return {"arrays": (rng.random(3), np.arange(i, dtype=np.uint16)),
                "deep": [{"a": np.asfortranarray(rng.integers(0, 9, (3, 2)))}, (np.float32(2.5), "s")]}
    if kind == 11:
        return rng.random(300_000)  # 2.4 MB: travels by its own Bcast
    if kind == 12:
        return None
    return (i, "text" * i, 2.0 ** -i, b"\x00bytes")


def expected(case, n):
    return [(big_array if case == "big" else mixed_value)(i) for i in range(n)]


# -- comparing -------------------------------------------------------------------------

def compare(got, want, where, problems):
    if type(got) is not type(want):
        problems.append(f"{where}: type {type(got).__name__} != {type(want).__name__}")
        return
    if isinstance(want, np.ndarray):
        if got.dtype != want.dtype or got.shape != want.shape:
            problems.append(f"{where}: {got.dtype}{got.shape} != {want.dtype}{want.shape}")
        elif not np.array_equal(got, want):
            problems.append(f"{where}: values differ")
        if got.flags.writeable != want.flags.writeable:
            problems.append(f"{where}: writeable {got.flags.writeable} != {want.flags.writeable}")
        if want.flags.c_contiguous or want.flags.f_contiguous:  # a pickle keeps C or Fortran order
            if (got.flags.c_contiguous, got.flags.f_contiguous) != (want.flags.c_contiguous, want.flags.f_contiguous):
                problems.append(f"{where}: memory order differs")
    elif isinstance(want, dict):
        if sorted(got) != sorted(want):
            problems.append(f"{where}: keys {sorted(got)} != {sorted(want)}")
        for key in want:
            if key in got:
                compare(got[key], want[key], f"{where}[{key!r}]", problems)
    elif isinstance(want, (list, tuple)):
        if len(got) != len(want):
            problems.append(f"{where}: length {len(got)} != {len(want)}")
        for k, (g, w) in enumerate(zip(got, want)):
            compare(g, w, f"{where}[{k}]", problems)
    elif got != want:
        problems.append(f"{where}: {got!r} != {want!r}")


def report(rank, case, got, want, **extra):
    problems: list = []
    compare(got, want, case, problems)
    emit(rank, case=case, ok=not problems, problems=problems[:10], **extra)


# -- the cases -------------------------------------------------------------------------

def case_map(rt, case, n):
    got = rt.map(big_array if case == "big" else mixed_value, list(range(n)))
    report(rt.rank, case, got, expected(case, n))


def case_direct(rt):
    """``deliver`` itself, with a value only rank 0 builds and pieces of 1000 bytes set on rank 0 alone.

    The small piece size and threshold (rank 0's) reach the others in the
    header: a rank that split differently would hang or fail here.
    """
    def build():
        ro = np.arange(10.0)
        ro.flags.writeable = False
        return {"mixed": expected("mixed", 14), "readonly": ro, "big": big_array(7),
                "view_of_big": big_array(8)[: MB // 16]}

    saved = collectives.CHUNK_BYTES, collectives.SMALL_BUFFER
    if rt.rank == 0:
        collectives.CHUNK_BYTES, collectives.SMALL_BUFFER = 1000, 4096
    try:
        got = collectives.deliver(rt.comm, build() if rt.rank == 0 else None, None)
    finally:
        collectives.CHUNK_BYTES, collectives.SMALL_BUFFER = saved
    report(rt.rank, "direct", got, build())


def case_unpicklable(rt):
    """A value rank 0 cannot pickle: every rank raises, none waits; the runtime goes on afterwards."""
    try:
        collectives.deliver(rt.comm, [1, threading.Lock()] if rt.rank == 0 else None, None)
        raised, message = None, ""
    except pickle.PicklingError as exc:
        raised, message = type(exc).__name__, str(exc)
    after = rt.map(mixed_value, list(range(14)))
    problems: list = []
    compare(after, expected("mixed", 14), "after", problems)
    emit(rt.rank, case="unpicklable", ok=not problems, problems=problems, raised=raised, message=message)


def case_root(rt, n):
    target = rt.size - 1
    got = rt.map(mixed_value, list(range(n)), root=target)
    big = rt.map(big_array, list(range(3)), root=target)
    if rt.rank == target:
        problems: list = []
        compare(got, expected("mixed", n), "root_mixed", problems)
        compare(big, expected("big", 3), "root_big", problems)
        emit(rt.rank, case="root", ok=not problems, problems=problems, has=True)
    else:
        emit(rt.rank, case="root", ok=got is None and big is None, problems=[], has=got is not None)


def main(cases):
    with hm.Runtime() as rt:
        for case in cases:
            if case == "big":
                case_map(rt, "big", 24)
            elif case == "mixed":
                case_map(rt, "mixed", 42)
            elif case == "direct":
                case_direct(rt)
            elif case == "unpicklable":
                case_unpicklable(rt)
            elif case == "root":
                case_root(rt, 28)
            else:
                raise SystemExit(f"unknown case {case!r}")


if __name__ == "__main__":
    main(sys.argv[1].split(","))
