"""Runtime: enter the communicator, split roles, run one call end to end."""

from __future__ import annotations

import hashlib
import re
import sys
import time
import traceback

import numpy

from .errors import InvalidCall, TaskError
from .master import Master, run_master
from .policies import get_policy
from .protocol import Backoff
from .reduce import combine_collectively, resolve_op
from .stats import CallStats
from .tasks import DECOMPOSITIONS, TaskSource, short_repr
from .worker import Executor, WorkerLoop

__all__ = ["Runtime"]

MASTER = 0


def describe_callable(fn) -> str:
    """A name for a kernel that is the same on every rank running the same code."""
    import functools

    if isinstance(fn, functools.partial):
        # Bound arguments matter (two ranks with different parameters run
        # different jobs); a digest compares them whole without a long name.
        text = re.sub(r" at 0x[0-9a-fA-F]+", "", repr((fn.args, sorted(fn.keywords.items()))))  # addresses differ per rank
        bound = hashlib.sha256(text.encode()).hexdigest()[:16]
        return f"partial({describe_callable(fn.func)}, args#{bound})"
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


class Runtime:
    """Every rank enters; rank 0 is the master, the others run tasks.

    ``comm`` defaults to ``MPI.COMM_WORLD``; the runtime works on a private
    duplicate so its messages never meet the application's. ``capacity`` is
    this rank's relative speed: shares of work are proportional to it.
    ``abort_on_error``: an exception that leaves the ``with`` block on one rank
    only (not one hpcmicro raised on every rank) aborts the MPI job, because the
    other ranks would otherwise wait for it forever.
    """

    def __init__(self, comm=None, policy="steal", capacity: float = 1.0, abort_on_error: bool = True):
        self.policy = get_policy(policy)
        try:
            capacity = float(capacity)
        except (TypeError, ValueError):
            raise InvalidCall(f"capacity must be a positive number, got {capacity!r}") from None
        if not capacity > 0:
            raise InvalidCall(f"capacity must be a positive number, got {capacity!r}")
        self.capacity = capacity
        self.abort_on_error = abort_on_error
        self._user_comm = comm
        self.comm = None
        self.stats: CallStats | None = None
        self._calls = 0

    # -- lifecycle -------------------------------------------------------------------
    def open(self) -> "Runtime":
        if self.comm is None:
            from mpi4py import MPI

            base = MPI.COMM_WORLD if self._user_comm is None else self._user_comm
            _wait_for_all(base)  # Dup is a blocking collective: don't spin while others arrive
            self.comm = base.Dup()
            self.capacities = self.comm.allgather(self.capacity)
        return self

    def close(self) -> None:
        if self.comm is not None:
            self.comm.Free()
            self.comm = None

    def __enter__(self):
        return self.open()

    def __exit__(self, exc_type, exc, tb):
        if exc is not None and self.abort_on_error and self.comm is not None and self.comm.size > 1:
            if not getattr(exc, "collective", False):
                from mpi4py import MPI

                sys.stderr.write(f"hpcmicro: rank {self.comm.rank}: uncaught error, aborting the MPI job\n")
                traceback.print_exception(exc_type, exc, tb, file=sys.stderr)
                sys.stderr.flush()
                MPI.COMM_WORLD.Abort(1)
        self.close()
        return False

    @property
    def rank(self) -> int:
        return self.open().comm.rank

    @property
    def size(self) -> int:
        return self.open().comm.size

    @property
    def is_master(self) -> bool:
        return self.rank == MASTER

    # -- calls -----------------------------------------------------------------------
    def map(self, kernel, tasks, root: int | None = None) -> list | None:
        """Run ``kernel`` on every task; results in task-id order (spawned tasks included)."""
        return self._call("map", kernel, tasks, None, root)

    def map_reduce(self, kernel, tasks, op="sum", root: int | None = None):
        """Run ``kernel`` on every task and combine the results in task-id order."""
        return self._call("map_reduce", kernel, tasks, op, root)

    def _call(self, kind, kernel, tasks, op, root):
        comm = self.open().comm
        t0 = time.perf_counter()
        self._calls += 1
        source, error, op_fn, n_roots = None, None, None, None
        try:
            if not callable(kernel):
                raise InvalidCall(f"kernel must be callable, got {short_repr(kernel)}")
            if kind == "map_reduce":
                op_name, op_fn = resolve_op(op)
            else:
                op_name = None
            if root is not None and not (isinstance(root, int) and 0 <= root < comm.size):
                raise InvalidCall(f"root must be None or a rank in [0, {comm.size}), got {root!r}")
            if comm.rank == MASTER:
                source = TaskSource(tasks)
                source.check_picklable()
                n_roots = source.n
                if kind == "map_reduce" and n_roots == 0:
                    raise InvalidCall("map_reduce over no tasks has no value")
            elif isinstance(tasks, DECOMPOSITIONS):
                n_roots = len(tasks)
        except InvalidCall as exc:
            error = str(exc)
            op_name = repr(op)
        signature = (kind, describe_callable(kernel), op_name, TaskSource.describe(tasks), root, self.policy.name)
        _wait_for_all(comm)
        seen = comm.allgather((signature, error, n_roots))
        _check_agreement(seen)
        n_roots = seen[MASTER][2]

        mode = "reduce" if kind == "map_reduce" else "map"
        decomposition = tasks if isinstance(tasks, DECOMPOSITIONS) else None
        if comm.size == 1:
            return self._call_in_process(kind, kernel, source, decomposition, mode, op_fn, n_roots, t0)

        executor, master = None, None
        if comm.rank == MASTER:
            workers = list(range(1, comm.size))
            master = Master(source.runs(), self.policy, workers, self.capacities[1:], mode)
            run_master(comm, master)
            stop_error = master.error
        else:
            executor = Executor(kernel, mode, decomposition, n_roots, op_fn, comm.rank, comm.size, numpy)
            loop = WorkerLoop(comm, executor, self.policy, MASTER)
            loop.run()
            stop_error = loop.stop_error

        _wait_for_all(comm)
        worker_stats = comm.allgather(executor.stats.as_dict() if executor else None)
        wall = comm.bcast(time.perf_counter() - t0 if master else None, root=MASTER)
        info = comm.bcast((master.created, master.steals_brokered, master.messages) if master else None, root=MASTER)
        self.stats = CallStats(kind, self.policy.name, comm.size, info[0], wall, info[1], info[2],
                               [w for w in worker_stats if w is not None])
        if stop_error is not None:
            raise TaskError(**stop_error)
        if mode == "reduce":
            return combine_collectively(comm, executor.tree if executor else None, n_roots, op_fn, root)
        ordered = _ordered_results(master, n_roots) if master else None
        return _deliver_object(comm, ordered, root)

    def _call_in_process(self, kind, kernel, source, decomposition, mode, op_fn, n_roots, t0):
        ex = Executor(kernel, mode, decomposition, n_roots, op_fn, 0, 1, numpy)
        ex.queue.push_many(source.runs())
        ok = ex.run_all()
        ex.stats.wall_s = time.perf_counter() - t0
        self.stats = CallStats(kind, self.policy.name, 1, ex.done, ex.stats.wall_s, workers=[ex.stats.as_dict()])
        if not ok:
            raise TaskError(**ex.error)
        if mode == "reduce":
            return ex.tree.result
        roots, spawned = ex.take_results()
        fake = _Collected(roots, spawned, ex.done)
        return _ordered_results(fake, n_roots)


class _Collected:
    def __init__(self, roots, spawned, created):
        self.root_segments, self.spawned_results, self.created = roots, spawned, created


def _ordered_results(master, n_roots) -> list:
    """Root results and spawned results merged into task-id order; check none is missing."""
    values = [None] * n_roots
    filled = 0
    for start, vals in master.root_segments:
        values[start : start + len(vals)] = vals
        filled += len(vals)
    spawned = master.spawned_results
    if filled != n_roots or n_roots + len(spawned) != master.created:
        raise RuntimeError(
            f"internal error: {filled} of {n_roots} root results and {len(spawned)} of "
            f"{master.created - n_roots} spawned results arrived"
        )
    if not spawned:
        return values
    spawned.sort(key=lambda item: item[0])
    out, j = [], 0
    for i in range(n_roots):
        out.append(values[i])
        while j < len(spawned) and spawned[j][0][0] == i:
            out.append(spawned[j][1])
            j += 1
    return out


def _deliver_object(comm, value, root):
    if root is None:
        return comm.bcast(value, root=MASTER)
    if root == MASTER:
        return value if comm.rank == MASTER else None
    if comm.rank == MASTER:
        comm.send(value, dest=root, tag=78)
    elif comm.rank == root:
        return comm.recv(source=MASTER, tag=78)
    return None


def _wait_for_all(comm) -> None:
    """Wait until every rank has arrived, sleeping rather than spinning.

    MPI's blocking collectives poll at full speed; a rank that arrives early
    (a worker waiting for the master to prepare) would burn a core.
    """
    if comm.size == 1:
        return
    req = comm.Ibarrier()
    backoff = Backoff()
    while not req.Test():
        backoff.sleep()


def _check_agreement(seen) -> None:
    """Raise the same InvalidCall on every rank if any rank had bad input or a different call."""
    for rank, (_, error, _) in enumerate(seen):
        if error is not None:
            raise InvalidCall(f"rank {rank}: {error}")
    reference = seen[MASTER][0]
    fields = ("call", "kernel", "op", "tasks", "root", "policy")
    for rank, (sig, _, _) in enumerate(seen):
        if sig != reference:
            diffs = [f"{f}: rank 0 {a!r} vs rank {rank} {b!r}" for f, a, b in zip(fields, reference, sig) if a != b]
            raise InvalidCall("ranks disagree on the call: " + "; ".join(diffs))
