"""The event loop: the real Master and workers on a simulated clock and a modelled network.

What is real: ``engine.Master``, ``engine.WorkerProtocol`` and
``engine.Executor`` (queues, seeding, steal brokering, termination, the
deterministic reduction), fed the same events and sending the same
instructions as under MPI. What is modelled (``Costs``):

- a message leaves its sender after the sender's CPU has pickled it
  (``message_cpu_s`` each, one after another), and arrives ``latency_s`` +
  size / ``bandwidth_Bps`` later (size: its pickled length), never before an
  earlier message of the same pair (MPI's order);
- the master is one server: a report waits until the master is free, then
  costs ``message_cpu_s`` to receive plus the master's time for the event
  (``Master.handle`` timed live, or ``master_event_s``), plus the sends;
- a worker's mailbox answers a message at once (its own thread: steal
  requests are served while a task runs), costing ``message_cpu_s`` per send;
- a task takes its modelled duration (the kernel's charge to ``METER``) plus
  the engine's own time for it (``Executor.run_one`` timed live, or
  ``worker_task_s``).

Simplifications (docs/scale.md): a task's effects (its children, its result)
exist from its start rather than its end, so a thief can take children one
task early; workers never compete for a core; the master's driver ticks
every ``tick_s`` while it is idle.
"""

from __future__ import annotations

import gc
import heapq
import pickle
import time
from dataclasses import dataclass, field
from operator import add

from ..engine.combine import merge_parts
from ..engine.events import Start, Tag, TaskRan, Tick, WorkerReport, worker_event
from ..engine.executor import Executor
from ..engine.group import GroupMaster, GroupMessage, group_of_ranks, group_ranks, top_policy
from ..engine.master import Master
from ..engine.policies import get_policy
from ..engine.tasks import TaskSource
from ..engine.worker import EXIT, RUN, WorkerProtocol
from .costs import Costs
from .workloads import METER, Workload

__all__ = ["SimResult", "simulate"]

_MSG, _DONE, _TICK = 0, 1, 2


@dataclass
class SimResult:
    workers: int
    workload: str
    description: str
    makespan_s: float  # simulated: from the call's start to the master's STOP
    work_s: float  # the modelled durations of every task run
    efficiency: float  # work / (workers * makespan)
    master_busy_s: float
    master_utilization: float  # master_busy / makespan
    master_events: int  # events the master handled (reports, ticks)
    messages: int
    messages_per_s: float
    steals: int  # steals the master brokered
    tasks: int
    value: float  # the call's sum reduction (= work_s: every task exactly once)
    max_pool: int  # largest master pool length sampled
    max_queued: int  # largest sum of worker queues sampled
    wall_s: float  # how long the simulation itself took
    costs: Costs = field(default_factory=Costs)
    groups: int = 0  # group masters (0: one master serves every worker)
    group_utilization: float = 0.0  # the busiest group master's busy time / makespan
    group_events: int = 0
    master_handle_s: float = 0.0  # the part of master_busy_s spent deciding (the rest: sending)

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "costs"}
        d["costs"] = self.costs.describe()
        return d


def simulate(workload: Workload, workers: int, costs: Costs | None = None, policy: str = "steal",
             max_events: int | None = None, validate: bool = False, group_size: int | None = None) -> SimResult:
    """Run ``workload`` as one ``map_reduce(op=sum)`` on ``workers`` simulated workers.

    ``group_size``: schedule in two levels, a group master (a rank of its own) for every
    ``group_size`` workers under the top master (engine/group.py); None: one master.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    # The collector's pauses (up to 0.2 s with a million live objects) would be charged to whichever
    # event they interrupt, as if a master were that slow: a real master's heap is far smaller.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _simulate(workload, workers, costs or Costs(), policy, max_events, validate, group_size)
    finally:
        if collecting:
            gc.enable()


def _simulate(workload, workers, costs, policy, max_events, validate, group_size) -> SimResult:
    wall0 = time.perf_counter()
    pol = get_policy(policy)
    source = TaskSource(workload.tasks)
    layout = group_ranks(workers, group_size) if group_size else []
    groups: dict = {}
    if layout:
        ranks = [r for _, members in layout for r in members]
        group_of = group_of_ranks(layout)
        for g, members in layout:
            groups[g] = GroupMaster(g, 0, members, [1.0] * len(members), pol, "reduce", op=add, n_roots=source.n,
                                    group_of=group_of)
        master = Master(source.runs(), top_policy(pol), [g for g, _ in layout], [float(len(m)) for _, m in layout],
                        "reduce", op=add, n_roots=source.n, payload_runs=source.payloads)
        boss = {r: group_of[r] for r in ranks}
    else:
        ranks = list(range(1, workers + 1))
        master = Master(source.runs(), pol, ranks, [1.0] * workers, "reduce", op=add, n_roots=source.n,
                        payload_runs=source.payloads)
        boss = {r: 0 for r in ranks}
    size = max(ranks) + 1
    executors = {r: Executor(workload.kernel, "reduce", None, source.n, add, r, size) for r in ranks}
    protocols = {r: WorkerProtocol(executors[r], pol, boss[r]) for r in ranks}
    running = [False] * size
    exited = [False] * size
    last_arrival: dict = {}
    heap: list = []
    seq = 0
    stats = {"master_busy": 0.0, "work": 0.0, "master_handle": 0.0}
    group_busy: dict = {}
    counts = {"messages": 0, "master_events": 0, "group_events": 0}
    free = dict.fromkeys([0, *groups], 0.0)  # when each master's CPU is free
    done_at: float | None = None
    perf = time.perf_counter
    lat, bw, mcpu = costs.latency_s, costs.bandwidth_Bps, costs.message_cpu_s
    dumps = pickle.dumps

    def push(t, kind, a, b=None):
        nonlocal seq
        seq += 1
        heapq.heappush(heap, (t, seq, kind, a, b))

    def send(source_rank, instructions, t) -> float:
        """Post ``instructions`` from ``source_rank``, its CPU free at ``t``; when its CPU is free again."""
        for ins in instructions:
            if not hasattr(ins, "dest"):
                continue  # CutReady: no checkpoints in a simulation
            t += mcpu
            body = ins.body
            size = len(dumps(body, 5)) if body is not None else 16
            arrive = t + lat + size / bw
            pair = (source_rank, ins.dest)
            prev = last_arrival.get(pair, 0.0)
            if arrive < prev:
                arrive = prev
            last_arrival[pair] = arrive
            counts["messages"] += 1
            push(arrive, _MSG, ins.dest, (source_rank, ins.tag, body))
        return t

    def server_event(rank, event_for, t) -> None:
        """A master's event (the top's, rank 0, or a group master's): it waits for the CPU, then runs."""
        nonlocal done_at
        begin = t if t > free[rank] else free[rank]
        machine = master if rank == 0 else groups[rank]
        t0 = perf()
        out = machine.handle(event_for(begin))
        spent = perf() - t0 if costs.master_event_s is None else costs.master_event_s
        end = send(rank, out, begin + spent)
        free[rank] = end
        if validate:
            machine.validate()
        if rank == 0:
            stats["master_busy"] += end - begin
            stats["master_handle"] += spent
            counts["master_events"] += 1
            if master.done and done_at is None:
                done_at = end
        else:
            group_busy[rank] = group_busy.get(rank, 0.0) + end - begin
            counts["group_events"] += 1

    def master_event(event_for, t) -> None:
        server_event(0, event_for, t)

    def kernel_step(r, t) -> None:
        proto = protocols[r]
        step, out = proto.next_step(t)
        t = send(r, out, t)
        if step is EXIT:
            exited[r] = True
            return
        if step is not RUN:
            return
        ex = executors[r]
        METER.spent = 0.0
        t0 = perf()
        ok = ex.run_one()
        real = perf() - t0
        spent = METER.spent
        ex.stats.busy_s += spent  # the policies read the mean task time: make it the simulated one
        stats["work"] += spent
        overhead = real if costs.worker_task_s is None else costs.worker_task_s
        running[r] = True
        push(t + spent + overhead, _DONE, r, ok)

    def worker_message(r, source_rank, tag, body, t) -> None:
        out = protocols[r].handle(worker_event(source_rank, tag, body))
        send(r, out, t + mcpu)
        if validate:
            protocols[r].validate()
        if not running[r] and not exited[r]:
            kernel_step(r, t + mcpu)

    master_event(lambda now: Start(now), 0.0)
    for g in groups:
        server_event(g, lambda now: Start(now), 0.0)
    for rank in free:
        push(costs.tick_s, _TICK, rank)
    events = 0
    while heap:
        t, _, kind, a, b = heapq.heappop(heap)
        events += 1
        if max_events is not None and events > max_events:
            raise RuntimeError(f"simulation did not end within {max_events} events")
        if kind == _MSG:
            source_rank, tag, body = b
            if a == 0:
                if tag != Tag.REPORT:
                    raise RuntimeError(f"master got tag {tag} from {source_rank}")
                master_event(lambda now, s=source_rank, b=body: WorkerReport(s, b, now, 0), t + mcpu)
            elif a in groups:
                server_event(a, lambda now, s=source_rank, g=tag, b=body: GroupMessage(s, g, b, now), t + mcpu)
            else:
                worker_message(a, source_rank, tag, body, t)
        elif kind == _DONE:
            running[a] = False
            kernel_step(a, send(a, protocols[a].handle(TaskRan(b, t)), t))
        else:  # a master's driver ticks when its mailbox is empty
            over = master.done if a == 0 else groups[a].stopped
            if not over:
                if t >= free[a]:
                    server_event(a, lambda now: Tick(now), t)
                push(t + costs.tick_s, _TICK, a)
    if not master.done or not all(exited[r] for r in ranks):
        raise RuntimeError("simulation ran out of events before the call ended")
    if master.stop is None or master.stop.kind != "ok" or done_at is None:
        raise RuntimeError(f"simulated call ended with {master.stop}")
    trees = [master.tree] + [g.inner.tree for g in groups.values()] + [ex.tree for ex in executors.values()]
    value = merge_parts(add, source.n, [(tree.shippable_lengths(), tree.blocks) for tree in trees if tree is not None])
    makespan = done_at
    samples = master.queue_samples
    return SimResult(
        workers=workers, workload=workload.name, description=workload.description, makespan_s=makespan,
        work_s=stats["work"], efficiency=stats["work"] / (workers * makespan) if makespan else 0.0,
        master_busy_s=stats["master_busy"], master_utilization=stats["master_busy"] / makespan if makespan else 0.0,
        master_events=counts["master_events"],
        messages=counts["messages"], messages_per_s=counts["messages"] / makespan if makespan else 0.0,
        steals=master.steals_brokered, tasks=master.created, value=float(value),
        max_pool=max((s[1] for s in samples), default=0), max_queued=max((s[2] for s in samples), default=0),
        wall_s=time.perf_counter() - wall0, costs=costs, groups=len(groups),
        group_utilization=max(group_busy.values(), default=0.0) / makespan if makespan else 0.0,
        group_events=counts["group_events"], master_handle_s=stats["master_handle"],
    )
