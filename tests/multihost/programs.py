"""What the ranks run in the multi-host tests: ``python programs.py NAME JSON_PARAMS``.

Ranks print one JSON line each (``{"rank": r, ...}``, read by tests.mpirun.MPIRun).
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sys
import time


def emit(rank, **fields):
    print(json.dumps({"rank": rank, **fields}), flush=True)


def where(p):
    """Who runs where, the node-local groups, and numpy traffic between the hosts."""
    import numpy as np
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.rank, comm.size
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    # The world ranks of my node-local group, as the group's rank 0 sees them.
    members = local.allgather(rank)
    n = p.get("n", 1 << 20)  # 8 MiB of float64: more than eager sizes, so the rendezvous path too
    a = np.arange(n, dtype=np.float64) * (rank + 1)
    total = np.empty_like(a)
    comm.Allreduce(a, total, op=MPI.SUM)
    allreduce_ok = bool(np.array_equal(total, np.arange(n, dtype=np.float64) * (size * (size + 1) // 2)))
    # Ping-pong between the first rank and the last (on another host), both ways.
    peer = size - 1
    ping = np.random.default_rng(7).standard_normal(n)
    pong_ok = None
    if rank == 0:
        comm.Send(ping, dest=peer, tag=1)
        back = np.empty_like(ping)
        comm.Recv(back, source=peer, tag=2)
        pong_ok = bool(np.array_equal(back, ping * 2))
    elif rank == peer:
        got = np.empty_like(ping)
        comm.Recv(got, source=0, tag=1)
        comm.Send(got * 2, dest=0, tag=2)
    emit(rank, size=size, processor=MPI.Get_processor_name(), hostname=socket.gethostname(),
         local_size=local.size, local_members=sorted(members), allreduce_ok=allreduce_ok, pong_ok=pong_ok,
         netns=os.readlink("/proc/self/ns/net"), shm=os.stat("/dev/shm").st_dev)


# -- hpcmicro across hosts ------------------------------------------------------------


def merge_counts(left, right):
    """Associative (and commutative) merge of {hostname: count} dicts."""
    out = dict(left)
    for k, v in right.items():
        out[k] = out.get(k, 0) + v
    return out


def uts_where(params, node):
    """A UTS node: spawn its children, count itself under the host that ran it."""
    from hpcmicro.kernels import uts

    time.sleep(0.0003)  # a little work per node, so a single root is worth stealing from
    kids = uts.children(params, node)
    if kids:
        import hpcmicro as hm

        hm.context().spawn_many(kids)
    return {socket.gethostname(): 1}


def uts_hosts(p):
    import hpcmicro as hm
    from hpcmicro.kernels import uts

    params = getattr(uts, p.get("preset", "SMALL_GEO"))
    with hm.Runtime(policy=p.get("policy", "steal"), group_size=p.get("group_size", "auto")) as rt:
        per_host = rt.map_reduce(functools.partial(uts_where, params), [uts.root(params)], op=merge_counts)
        workers = [{"rank": w["rank"], "tasks": w["tasks"], "steals_received": w["steals_received"]}
                   for w in rt.stats.workers]
        emit(rt.rank, per_host=per_host, hostname=socket.gethostname(), steals=rt.stats.steals,
             tasks=rt.stats.tasks, workers=workers, layout=rt.layout)


def irregular_value(i):
    """An irregular task: cost and value depend on i; an exact float sum of these is order-sensitive."""
    time.sleep(0.0005 * (i % 7))
    return (i * 0.1) ** 1.5 / (1 + i % 13), socket.gethostname()


def irregular_sum(p):
    import hpcmicro as hm

    n = p.get("n", 400)
    with hm.Runtime(policy=p.get("policy", "steal")) as rt:
        out = rt.map(irregular_value, list(range(n)))
        total = rt.map_reduce(functools.partial(_first, irregular_value), list(range(n)))
        emit(rt.rank, total=float(total).hex(), values=[float(v).hex() for v, _ in out],
             hosts=sorted({h for _, h in out}), hostname=socket.gethostname())


def _first(kernel, i):
    return kernel(i)[0]


PROGRAMS = {"where": where, "uts_hosts": uts_hosts, "irregular_sum": irregular_sum}


if __name__ == "__main__":
    PROGRAMS[sys.argv[1]](json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
