"""A whole call in one process: the master in the calling thread, each worker on two threads.

The same master, worker protocol and executor as on MPI ranks, over the
in-process transport. This is how a one-rank job runs (``python script.py``,
with ``inprocess_workers`` workers), and how the master finishes a call alone
when every worker rank died (ULFM).
"""

from __future__ import annotations

import threading

from ..engine.combine import CombineError, merge_parts
from ..errors import TaskError
from ..engine.arrays import to_host
from ..transport.inproc import InprocWorld
from .call import (
    CallSpec, Outcome, StatsParts, make_executor, make_master, make_protocol, master_summary, ordered_results,
    reduced_value, stop_exception,
)
from .cooperative import drive_cooperatively
from .master import drive_master
from .worker import WorkerDriver

__all__ = ["run_inprocess"]


def run_inprocess(spec: CallSpec, options, backend, *, workers: int = 1, resume=None, on_cut=None,
                  checkpoint_every=None, progress=None, signal=lambda: 0, signal_pending=lambda: False,
                  preempted=None) -> Outcome:
    """Run the call on ``workers`` worker threads; returns its Outcome (nothing is raised for a task error)."""
    world = InprocWorld(workers + 1)
    ranks = list(range(1, workers + 1))
    master = make_master(spec, options, ranks, [1.0] * workers, resume)
    executors = [make_executor(spec, options, r, 1, backend, process_rank=0) for r in ranks]
    if workers == 1:  # nobody to balance with: no threads (see cooperative.py)
        drive_cooperatively(master, world[1], world[0], make_protocol(executors[0], options),
                            checkpoint_every=checkpoint_every, on_cut=on_cut, progress=progress, signal=signal,
                            signal_pending=signal_pending)
    else:
        _drive_threads(master, world, executors, options, backend, checkpoint_every=checkpoint_every,
                       on_cut=on_cut, progress=progress, signal=signal)
    return _outcome(spec, options, master, executors, preempted)


def _drive_threads(master, world, executors, options, backend, kind="map", **drive) -> None:
    """Each worker on a kernel thread and a mailbox thread; the master in the calling thread."""
    ranks = [ex.stats.rank for ex in executors]
    drivers = [WorkerDriver(world[r], make_protocol(ex, options, kind=kind), device=backend.device)
               for r, ex in zip(ranks, executors)]
    errors: list = []

    def work(driver):
        try:
            driver.run(lambda stop: None)
        except BaseException as exc:  # noqa: BLE001  (re-raised in the caller's thread)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(d,), name=f"hpcmicro-worker-{r}", daemon=True)
               for r, d in zip(ranks, drivers)]
    for t in threads:
        t.start()
    try:
        drive_master(master, world[0], **drive)
    finally:
        for d in drivers:
            d.cancel()
    for t, ex in zip(threads, executors):
        if not ex.retired:  # a retired worker's kernel may still be stuck: its late result is dropped anyway
            t.join()
    if errors:
        raise errors[0]


def _outcome(spec, options, master, executors, preempted) -> Outcome:
    stats = StatsParts(spec.kind, options.policy.name, 1, master_summary(master, spec),
                       [ex.stats.as_dict() for ex in executors], [ex.times.summary() for ex in executors])
    timelines = [ex.times.raw(ex.stats.rank, spec.epoch) for ex in executors] if options.trace else None
    error = stop_exception(master.stop, preempted)
    if error is not None:
        return Outcome(stats, error, None, timelines)
    if spec.mode == "reduce":
        parts = [(master.tree.shippable_lengths(), master.tree.blocks)]
        for ex in executors:
            if not ex.retired:  # a retired worker's blocks came back with its hand-back
                parts.append((ex.tree.shippable_lengths(), {k: to_host(v) for k, v in ex.tree.blocks.items()}))
        try:
            value = reduced_value(merge_parts(spec.op_fn, spec.n_roots, parts))
        except CombineError as exc:
            return Outcome(stats, TaskError(**exc.failure(0)), None, timelines)
    else:
        value = None if spec.kind == "open" else ordered_results(master, spec.n_roots)
    return Outcome(stats, None, value, timelines)
