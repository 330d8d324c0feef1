"""What one call runs, and the pieces both ways of running it share (MPI ranks, or threads).

``CallSpec`` is what the Runtime decided before anything ran; ``Outcome`` is
what a run gives back: the statistics, the exception to raise on every caller
(a TaskError or Preempted) or None, and the full value (on the master).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..engine.combine import SKIPPED
from ..engine.executor import Executor
from ..engine.master import Master
from ..engine.worker import WorkerProtocol
from ..errors import TaskError
from ..observe.stats import CallStats

__all__ = ["CallSpec", "Outcome", "make_master", "make_executor", "make_protocol", "master_summary",
           "StatsParts", "ordered_results", "stop_exception", "reduced_value"]


@dataclass
class CallSpec:
    """What one call runs, kept for its attempts (a ULFM recovery starts it again)."""

    kind: str  # "map", "map_reduce", or "open" (tasks submitted while it runs: driver/opencall.py)
    kernel: Any
    source: Any  # TaskSource (the master only) or None
    decomposition: Any  # Range/Blocks, or None for a list of payloads
    op_fn: Any  # the reduction (map_reduce)
    n_roots: int
    index: int  # the call's number in this Runtime
    identity: str  # the checkpoint identity (master only)
    t0: float  # perf_counter at entry
    code: dict = field(default_factory=dict)  # codehash.code_parts() of kernel and op (master, checkpointing)
    epoch: float = 0.0  # perf_counter when every rank passed the call's agreement: the trace's zero

    @property
    def mode(self) -> str:
        return "reduce" if self.kind == "map_reduce" else "map"


class Outcome(NamedTuple):
    stats: Any  # StatsParts (built into CallStats when read); None on a worker until the header comes
    error: BaseException | None  # TaskError or Preempted, raised on every caller
    value: Any  # the full result, on the master (None elsewhere)
    timelines: list | None = None  # the workers' trace events (TaskTimes.raw), on the master, when tracing


def make_master(spec: CallSpec, options, worker_ranks, capacities, resume=None, policy=None) -> Master:
    source = spec.source
    return Master(source.runs(), policy or options.policy, list(worker_ranks), list(capacities), spec.mode,
                  op=spec.op_fn, n_roots=spec.n_roots, resume=resume, payload_runs=source.payloads,
                  preempt_grace_s=options.preempt_grace)


def make_executor(spec: CallSpec, options, worker: int, size: int, backend, process_rank=None) -> Executor:
    """``worker``: the worker's id (its rank); ``size``, ``process_rank``: the MPI job's, for ``hm.context()``."""
    return Executor(spec.kernel, spec.mode, spec.decomposition, spec.n_roots, spec.op_fn, worker, size, backend.module,
                    retries=options.retries, on_error=options.on_error, device=backend.device,
                    tracing=bool(options.trace), process_rank=process_rank)


# An open-ended call's results are awaited one by one (futures, and their dependents): a busy worker
# reports them at least this often, not every WorkerProtocol.STATUS_INTERVAL_S.
OPEN_STATUS_INTERVAL_S = 0.002


def make_protocol(executor: Executor, options, master_rank: int = 0, kind: str = "map") -> WorkerProtocol:
    protocol = WorkerProtocol(executor, options.policy, master_rank, task_timeout=options.task_timeout)
    if kind == "open":
        protocol.STATUS_INTERVAL_S = OPEN_STATUS_INTERVAL_S
    return protocol


def master_summary(master: Master, spec: CallSpec) -> tuple:
    """What the master tells every rank about the call for its statistics."""
    info = (time.perf_counter() - spec.t0, master.created, master.steals_brokered, master.messages,
            master.failed, master.queue_samples)
    decisions = {"counts": dict(master.decision_counts), "latest": list(master.decisions)}
    return info, master.bytes_from, decisions


class StatsParts(NamedTuple):
    """What a call's statistics are built from; ``build()`` only when someone reads ``rt.stats``."""

    kind: str
    policy: str
    ranks: int
    summary: tuple  # master_summary
    worker_dicts: list
    task_summaries: list

    @property
    def failed(self) -> list:
        return list(self.summary[0][4])

    def build(self) -> CallStats:
        info, bytes_from, decisions = self.summary
        stats = CallStats.build(self.kind, self.policy, self.ranks, info, self.worker_dicts, self.task_summaries,
                                bytes_from)
        stats.decisions = decisions
        return stats


def stop_exception(stop, preempted) -> BaseException | None:
    """The exception a call that ended with ``stop`` raises on every caller (``preempted(signum)`` builds one)."""
    if stop.kind == "error":
        return TaskError(**stop.info)
    if stop.kind == "preempted":
        return preempted(stop.info)
    return None


def reduced_value(value):
    return None if value is SKIPPED else value


def ordered_results(master: Master, n_roots: int) -> list:
    """The map results in task-id (pre-order) order: the runs sorted by their first task, joined.

    Runs never overlap (each task ran once), so sorting by first id orders every task.
    """
    segments = sorted(master.segments, key=lambda seg: seg[0])
    out: list = []
    for _, values in segments:
        out.extend(values)
    expected = master.resumed_results + master.finished
    if len(out) != expected or (n_roots and segments[0][0] != (0,)):
        raise RuntimeError(f"internal error: {len(out)} map results arrived for {expected} finished tasks")
    return out

