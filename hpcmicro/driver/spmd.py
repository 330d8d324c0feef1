"""A call on the ranks of an MPI communicator: rank 0 drives the master, the others are workers.

The end of the call (``finish``) is collective: statistics from every rank,
then the error, the reduction (partial trees gathered to rank 0) or the
ordered ``map`` results. A worker runs it on its mailbox thread, so that one
whose kernel hangs past ``task_timeout`` does not hold up the others.
"""

from __future__ import annotations

from ..constants import MASTER
from ..engine.combine import CombineError
from ..errors import TaskError
from ..mpi.collectives import combine_collectively, wait_for_all
from ..transport.mpi import MPITransport
from .call import (
    CallSpec, Outcome, build_stats, make_executor, make_master, make_protocol, master_summary, ordered_results,
    reduced_value, stop_exception,
)
from .master import drive_master
from .worker import WorkerDriver

__all__ = ["run_master_rank", "run_worker_rank"]


def run_master_rank(comm, spec: CallSpec, options, capacities, *, resume=None, on_cut=None, checkpoint_every=None,
                    progress=None, signal=lambda: 0, preempted=None) -> Outcome:
    master = make_master(spec, options, range(1, comm.size), capacities[1:], resume)
    drive_master(master, MPITransport(comm), checkpoint_every=checkpoint_every, on_cut=on_cut, progress=progress,
                 signal=signal)
    return _finish(comm, spec, options, master, None, master.stop, preempted)


def run_worker_rank(comm, spec: CallSpec, options, backend, *, signal=lambda: 0, preempted=None) -> Outcome:
    executor = make_executor(spec, options, comm.rank, comm.size, backend)
    driver = WorkerDriver(MPITransport(comm), make_protocol(executor, options, MASTER), signal=signal)
    return driver.run(lambda stop: _finish(comm, spec, options, None, executor, stop, preempted))


def _finish(comm, spec, options, master, executor, stop, preempted) -> Outcome:
    """The end of the call on every rank: statistics, then the result or the error."""
    wait_for_all(comm)
    mine = (executor.stats.as_dict(), executor.times.summary()) if executor else (None, None)
    gathered = comm.allgather(mine)
    summary = comm.bcast(master_summary(master, spec) if master else None, root=MASTER)
    stats = build_stats(spec, options, comm.size, summary, [g[0] for g in gathered], [g[1] for g in gathered])
    timelines = None
    if options.trace:
        timelines = comm.gather(executor.times.raw(comm.rank, spec.epoch) if executor else None, root=MASTER)
        if timelines is not None:
            timelines = [t for t in timelines if t is not None]
    error = stop_exception(stop, preempted)
    if error is not None:
        return Outcome(stats, error, None, timelines)
    if spec.mode == "reduce":
        tree = master.tree if master else executor.tree
        failure, value = None, None
        try:
            value = reduced_value(combine_collectively(comm, tree, spec.n_roots, spec.op_fn))
        except CombineError as exc:  # on rank 0, where the last blocks meet: every rank must raise it
            failure = exc.failure(comm.rank)
        failure = comm.bcast(failure, root=MASTER)
        if failure is not None:
            return Outcome(stats, TaskError(**failure), None, timelines)
    else:
        value = ordered_results(master, spec.n_roots) if master else None
    return Outcome(stats, None, value, timelines)
