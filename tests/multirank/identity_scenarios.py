"""Multi-rank scenarios for call identity and the MPI thread level.

Run as ``mpiexec -n N python identity_scenarios.py NAME JSON_PARAMS``. Each rank
prints one JSON line tagged with its rank (see tests/mpirun.py's reports()).
"""

from __future__ import annotations

import functools
import json
import sys


def emit(rank, **fields):
    print(json.dumps({"rank": rank, **fields}), flush=True)


# -- kernels and ops (module level: every rank has them) ---------------------------

def weighted(weights, i):
    return int(weights[i % len(weights)]) * (i + 1)


def mod_add(m, a, b):
    return (a + b) % m


class ModMul:
    """A callable instance: no __qualname__ of its own, a repr with an address."""

    def __init__(self, m):
        self.m = m

    def __call__(self, a, b):
        return (a * b) % self.m


def partial_op(p):
    """map_reduce with a functools.partial op (and a partial kernel over a large array)."""
    import numpy as np

    import hpcmicro as hm

    n, m = p["n"], p["m"]
    weights = np.arange(5000) % 97  # prints truncated: only a digest tells it apart
    kernel = functools.partial(weighted, weights)
    ops = {"partial": functools.partial(mod_add, m), "instance": ModMul(m)}
    op = ops[p["op"]]
    with hm.Runtime(policy=p.get("policy", "steal")) as rt:
        try:
            value = rt.map_reduce(kernel, list(range(n)), op=op)
        except hm.InvalidCall as exc:
            emit(rt.rank, error=str(exc))
            return
        emit(rt.rank, value=value)


def thread_single(p):
    """MPI initialised at MPI_THREAD_SINGLE: opening a Runtime must fail clearly on every rank."""
    import mpi4py

    mpi4py.rc.thread_level = "single"  # before mpi4py.MPI is first imported
    from mpi4py import MPI

    import hpcmicro as hm

    rank = MPI.COMM_WORLD.Get_rank()
    try:
        hm.Runtime().open()
    except hm.InvalidCall as exc:
        emit(rank, level=MPI.Query_thread(), error=str(exc))
        return
    emit(rank, level=MPI.Query_thread(), error=None)


SCENARIOS = {"partial_op": partial_op, "thread_single": thread_single}


if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
