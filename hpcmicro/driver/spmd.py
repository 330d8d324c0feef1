"""A call on the ranks of an MPI communicator: rank 0 drives the master, the others are workers.

The end of the call is one exchange (``mpi/rounds.py``): each worker sends the
master its statistics, its part of the reduction and its trace
(``_worker_end``, on the worker's mailbox thread, so that one whose kernel
hangs past ``task_timeout`` does not hold up the others); the master merges
them (``_master_end``). What every rank then learns (statistics, a failure
found on the master, and the result's delivery header from
``mpi/collectives.pack_for_all``, which holds a small result whole) goes out
in one header per worker, sent by ``conclude`` after the master has stored
the result in the checkpoint; a large result then follows by ``Bcast``.
Statistics are assembled (``StatsParts.build``) only when someone reads them.
"""

from __future__ import annotations
from ..constants import MASTER
from ..engine.combine import CombineError, merge_parts
from ..errors import TaskError
from ..io.checkpoint import CheckpointError
from ..mpi.collectives import deliver, pack_for_all, receive_packed, send_packed
from ..engine.arrays import to_host
from ..engine.group import GroupMaster, group_of_ranks, top_policy
from ..mpi.rounds import gather_pieces, receive_header, send_headers, send_piece
from ..transport.mpi import MPITransport
from .call import (
    CallSpec, Outcome, StatsParts, make_executor, make_master, make_protocol, master_summary, ordered_results,
    reduced_value, stop_exception,
)
from .group import drive_group
from .master import drive_master
from .worker import WorkerDriver

__all__ = ["conclude", "result_lost", "run_master_rank", "run_worker_rank", "run_group_rank"]


def run_master_rank(comm, spec: CallSpec, options, capacities, *, resume=None, on_cut=None, checkpoint_every=None,
                    progress=None, signal=lambda: 0, preempted=None, layout=None) -> Outcome:
    """``layout`` (engine/group.plan_groups): the top master serves group masters, each as one worker as
    strong as its members together; None: it serves every other rank."""
    if layout:
        master = make_master(spec, options, [g for g, _ in layout],
                             [sum(capacities[r] for r in members) for _, members in layout], resume,
                             policy=top_policy(options.policy))
    else:
        master = make_master(spec, options, range(1, comm.size), capacities[1:], resume)
    drive_master(master, MPITransport(comm), checkpoint_every=checkpoint_every, on_cut=on_cut, progress=progress,
                 signal=signal)
    return _master_end(comm, spec, options, master, preempted)


def run_worker_rank(comm, spec: CallSpec, options, backend, *, signal=lambda: 0, preempted=None,
                    master_rank: int = MASTER) -> Outcome:
    """``master_rank``: the rank this worker reports to (its group master under two levels)."""
    executor = make_executor(spec, options, comm.rank, comm.size, backend)
    driver = WorkerDriver(MPITransport(comm), make_protocol(executor, options, master_rank, spec.kind),
                          signal=signal)
    return driver.run(lambda stop: _worker_end(comm, spec, options, executor, stop, preempted))


def run_group_rank(comm, spec: CallSpec, options, capacities, layout, *, preempted=None) -> Outcome:
    """A group master's call: serve its members until STOP, then send the master its piece (the
    combine-tree blocks it still holds; no statistics of its own: it runs no task)."""
    members = dict(layout)[comm.rank]
    group = GroupMaster(comm.rank, MASTER, members, [capacities[r] for r in members], options.policy, spec.mode,
                        op=spec.op_fn, n_roots=spec.n_roots, group_of=group_of_ranks(layout))
    drive_group(group, MPITransport(comm))
    assert group.stop is not None  # drive_group returns once STOP came
    tree_part = None
    if spec.mode == "reduce" and group.stop.kind == "ok":
        tree_part = group.inner.take_tree_part()
    send_piece(comm, (None, None, tree_part, None))
    return Outcome(None, stop_exception(group.stop, preempted), None, None)


def _worker_end(comm, spec, options, executor, stop, preempted) -> Outcome:
    tree_part = None
    if spec.mode == "reduce" and executor.tree is not None and stop.kind == "ok":
        tree = executor.tree
        tree_part = (tree.shippable_lengths(), {k: to_host(v) for k, v in tree.blocks.items()})
    timeline = executor.times.raw(comm.rank, spec.epoch) if options.trace else None
    send_piece(comm, (executor.stats.as_dict(), executor.times.summary(), tree_part, timeline))
    return Outcome(None, stop_exception(stop, preempted), None, None)  # the rest comes in the header


def _master_end(comm, spec, options, master, preempted) -> Outcome:
    pieces = gather_pieces(comm)
    ranks = sorted(pieces)
    stats = StatsParts(spec.kind, options.policy.name, comm.size, master_summary(master, spec),
                       [None] + [pieces[r][0] for r in ranks], [None] + [pieces[r][1] for r in ranks])
    timelines = [pieces[r][3] for r in ranks if pieces[r][3] is not None] if options.trace else None
    error = stop_exception(master.stop, preempted)
    if error is not None:
        return Outcome(stats, error, None, timelines)
    if spec.mode == "reduce":
        parts = [(master.tree.shippable_lengths(), master.tree.blocks)] if master.tree is not None else []
        parts += [pieces[r][2] for r in ranks if pieces[r][2] is not None]
        try:
            value = reduced_value(merge_parts(spec.op_fn, spec.n_roots, parts))
        except CombineError as exc:  # where the last blocks meet: every rank raises it
            return Outcome(stats, TaskError(**exc.failure(comm.rank)), None, timelines)
    else:  # an open-ended call's results were handed out as they came (driver/opencall.py)
        value = None if spec.kind == "open" else ordered_results(master, spec.n_roots)
    return Outcome(stats, None, value, timelines)


def conclude(comm, outcome: Outcome, root, store=None) -> Outcome:
    """The master tells every worker how the call ended; the result reaches ``root`` (None: every rank).

    ``store()`` (the master's, for checkpointed calls) runs first and may
    raise CheckpointError: then every rank raises it. Returns the rank's
    Outcome with its statistics, error and value.
    """
    failure: BaseException | None = None  # found on the master at the end, unknown to the workers
    if comm.rank == MASTER:
        if outcome.error is None and store is not None:
            try:
                store()
            except CheckpointError as exc:
                failure = result_lost(str(exc))
        if isinstance(outcome.error, TaskError):  # e.g. from the master's final merge
            failure = outcome.error
        packed = None  # the result for every rank, packed once (mpi/collectives.py)
        if failure is None and outcome.error is None and root is None:
            packed = pack_for_all(outcome.value)
        send_headers(comm, (outcome.stats, failure, packed[0] if packed else None))
        value = outcome.value
    else:
        stats, failure, delivery = receive_header(comm)
        outcome, value = outcome._replace(stats=stats), None
    error = outcome.error if outcome.error is not None else failure
    if error is not None:
        return outcome._replace(error=error, value=None)
    if root is not None:
        return outcome._replace(value=deliver(comm, value, root))
    # The delivery header came in the end header: a small result is in it, a large one follows by Bcast.
    if comm.rank == MASTER:
        assert packed is not None
        return outcome._replace(value=send_packed(comm, value, *packed))
    return outcome._replace(value=receive_packed(comm, delivery))


def result_lost(message: str) -> CheckpointError:
    return CheckpointError(f"{message}; the call's result is lost: rerun to resume from the last checkpoint on disk")
