"""Result delivery: ``rt.map`` results to every rank (``root=None``) against to rank 0 only (``root=0``).

    mpiexec -n 3 python benchmarks/bench_delivery.py              # JSON records, then a table
    mpiexec -n 3 python benchmarks/bench_delivery.py --profile    # ... and cProfile of one old and one new delivery

The kernel (``array_task``) returns an array of N MB (float64) per task; each
size runs ``rt.map(array_task, range(tasks))`` with ``root=0`` (the value on
rank 0 alone: the gather to the master, no delivery) and ``root=None`` (the
same, then delivered to every rank), and ``root=None`` once more with the
delivery before this change (``legacy_deliver``: the whole list pickled into
one object and ``comm.bcast``; patched into ``hpcmicro.driver.spmd``). The
order within a repeat is ABCCBA (root=0, None, legacy, legacy, None, root=0),
so that drift over the run falls on every variant alike; each variant's figure
is the median of its calls. MB/s is the call's result bytes over its wall time.

Then the delivery alone, on the same list built on rank 0, between barriers:
``comm.bcast`` (the old way), ``mpi4py.util.pkl5`` ``bcast`` and
``hpcmicro.mpi.collectives.deliver(comm, value, None)`` (the new one), in the
same ABCCBA order. With ``--profile`` rank 0 also runs cProfile over one old
and one new delivery of the 1 MB list and prints the top functions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import emit  # noqa: E402

_now = time.perf_counter

SIZES_MB = (0.01, 0.1, 1.0, 8.0)


def array_task(spec):
    """Task ``i`` of an N-byte size: ``nbytes // 8`` float64 values, all equal to ``i``."""
    import numpy as np

    nbytes, i = spec
    return np.full(nbytes // 8, float(i))


def legacy_deliver(comm, value, root):
    """``deliver`` before this change, for the reference: a NumPy array alone by Bcast, else one pickle."""
    import numpy as np

    if root is None:
        is_array = isinstance(value, np.ndarray) and value.dtype != object
        kind = comm.bcast((value.dtype.str, value.shape) if comm.rank == 0 and is_array else None, root=0)
        if kind is None:
            return comm.bcast(value, root=0)
        buf = np.ascontiguousarray(value) if comm.rank == 0 else np.empty(kind[1], np.dtype(kind[0]))
        comm.Bcast(buf, root=0)
        return buf
    from hpcmicro.mpi.collectives import deliver

    return deliver(comm, value, root)


def tasks_for(mb: float, args) -> int:
    return args.tasks_large if mb >= 8 else args.tasks


def abccba(variants):
    return list(variants) + list(reversed(variants))


def run_map(rt, mb, n_tasks, variant):
    import hpcmicro.driver.spmd as spmd
    from hpcmicro.mpi.collectives import deliver

    nbytes = int(mb * 1e6) // 8 * 8
    tasks = [(nbytes, i) for i in range(n_tasks)]
    spmd.deliver = legacy_deliver if variant == "none_legacy" else deliver
    try:
        t0 = _now()
        out = rt.map(array_task, tasks, root=0 if variant == "root0" else None)
        wall = _now() - t0
    finally:
        spmd.deliver = deliver
    if out is not None:  # every rank that holds the result checks it
        assert len(out) == n_tasks and all(a.shape == (nbytes // 8,) and a[0] == i for i, a in enumerate(out))
    return wall, nbytes * n_tasks


def delivery_only(comm, value, variant):
    from mpi4py.util import pkl5

    from hpcmicro.mpi.collectives import deliver

    big = pkl5.Intracomm(comm)
    fn = {"bcast": lambda: comm.bcast(value, root=0), "pkl5": lambda: big.bcast(value, root=0),
          "deliver": lambda: deliver(comm, value, None)}[variant]
    comm.Barrier()
    t0 = _now()
    out = fn()
    comm.Barrier()
    wall = _now() - t0
    assert len(out) == comm.bcast(len(value) if comm.rank == 0 else None, root=0)
    return wall


def profile_once(comm, label, fn) -> None:
    """cProfile one delivery on every rank; rank 0 prints rank 0's and rank 1's top functions by own time."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    comm.Barrier()
    prof.enable()
    fn()
    prof.disable()
    comm.Barrier()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(6)
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    head = next(i for i, ln in enumerate(lines) if "ncalls" in ln)
    texts = comm.gather("\n".join([lines[0]] + lines[head:head + 7]), root=0)
    if comm.rank == 0:
        for rank in (0, 1):
            print(f"--- cProfile, rank {rank}, {label} ---\n{texts[rank]}", file=sys.stderr, flush=True)


def old_breakdown(comm, value) -> dict:
    """The steps of ``comm.bcast(list)`` one by one: pickle on rank 0, one Bcast of the bytes, unpickle."""
    import pickle

    from mpi4py import MPI

    comm.Barrier()
    t0 = _now()
    data = pickle.dumps(value, protocol=5) if comm.rank == 0 else None
    t1 = _now()
    size = comm.bcast(len(data) if comm.rank == 0 else None, root=0)
    buf = data if comm.rank == 0 else bytearray(size)
    comm.Bcast([buf, MPI.BYTE], root=0)
    t2 = _now()
    if comm.rank != 0:
        pickle.loads(buf)
    t3 = _now()
    comm.Barrier()
    steps = comm.gather((t1 - t0, t2 - t1, t3 - t2), root=0)
    if comm.rank != 0:
        return {}
    return {"dumps_s": steps[0][0], "bcast_s": max(s[1] for s in steps), "loads_s": max(s[2] for s in steps[1:])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=64, help="tasks a call for the sizes under 8 MB")
    ap.add_argument("--tasks-large", type=int, default=16, help="tasks a call for 8 MB")
    ap.add_argument("--sizes", default=",".join(str(s) for s in SIZES_MB), help="MB a task, comma-separated")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    sizes = [float(s) for s in args.sizes.split(",")]

    import numpy as np

    import hpcmicro as hm

    rows = []
    with hm.Runtime() as rt:
        comm = rt.comm
        rt.map(array_task, [(8, i) for i in range(8)])  # warm-up
        for mb in sizes:
            n_tasks = tasks_for(mb, args)
            walls: dict = {v: [] for v in ("root0", "none", "none_legacy")}
            for _ in range(args.repeats):
                for variant in abccba(["root0", "none", "none_legacy"]):
                    wall, total = run_map(rt, mb, n_tasks, variant)
                    walls[variant].append(wall)
            nbytes = int(mb * 1e6) // 8 * 8
            value = [np.full(nbytes // 8, float(i)) for i in range(n_tasks)] if rt.rank == 0 else None
            direct: dict = {v: [] for v in ("bcast", "pkl5", "deliver")}
            for _ in range(args.repeats):
                for variant in abccba(["bcast", "pkl5", "deliver"]):
                    direct[variant].append(delivery_only(comm, value, variant))
            if args.profile and mb == 1.0:
                from hpcmicro.mpi.collectives import deliver

                profile_once(comm, "old: comm.bcast(list)", lambda v=value: comm.bcast(v, root=0))
                profile_once(comm, "new: deliver(comm, list, None)", lambda v=value: deliver(comm, v, None))
                steps = [old_breakdown(comm, value) for _ in range(args.repeats)]
                if rt.rank == 0:
                    print("--- old comm.bcast(list), step by step (median s): " + ", ".join(
                        f"{k} {statistics.median(s[k] for s in steps):.4f}" for k in steps[0]), file=sys.stderr)
            if rt.rank != 0:
                continue
            med = {k: statistics.median(v) for k, v in {**walls, **direct}.items()}
            mbs = {k: total / t / 1e6 for k, t in med.items()}
            rec = {"bench": "delivery", "mb_per_task": mb, "tasks": n_tasks, "ranks": rt.size,
                   "repeats": args.repeats, "median_s": med, "mb_per_s": mbs,
                   "ratio_none_to_root0": mbs["none"] / mbs["root0"],
                   "ratio_legacy_to_root0": mbs["none_legacy"] / mbs["root0"],
                   "all_s": {**walls, **direct}}
            emit(rec)
            rows.append(rec)
    if rows:
        print(table(rows), flush=True)


def table(rows) -> str:
    out = ["| MB a task | tasks | map root=0 MB/s | map root=None MB/s (new) | ratio | "
           "map root=None MB/s (old) | ratio | comm.bcast MB/s | pkl5 bcast MB/s | deliver MB/s |",
           "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        m = r["mb_per_s"]
        out.append(f"| {r['mb_per_task']:g} | {r['tasks']} | {m['root0']:.0f} | {m['none']:.0f} | "
                   f"{r['ratio_none_to_root0']:.2f} | {m['none_legacy']:.0f} | {r['ratio_legacy_to_root0']:.2f} | "
                   f"{m['bcast']:.0f} | {m['pkl5']:.0f} | {m['deliver']:.0f} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
