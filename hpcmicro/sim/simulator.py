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

import heapq
import pickle
import time
from dataclasses import dataclass, field
from operator import add

from ..engine.combine import merge_parts
from ..engine.events import Start, Tag, TaskRan, Tick, WorkerReport, worker_event
from ..engine.executor import Executor
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

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "costs"}
        d["costs"] = self.costs.describe()
        return d


def simulate(workload: Workload, workers: int, costs: Costs | None = None, policy: str = "steal",
             max_events: int | None = None, validate: bool = False) -> SimResult:
    """Run ``workload`` as one ``map_reduce(op=sum)`` on ``workers`` simulated workers."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    costs = costs or Costs()
    wall0 = time.perf_counter()
    pol = get_policy(policy)
    source = TaskSource(workload.tasks)
    ranks = list(range(1, workers + 1))
    master = Master(source.runs(), pol, ranks, [1.0] * workers, "reduce", op=add, n_roots=source.n,
                    payload_runs=source.payloads)
    executors = {r: Executor(workload.kernel, "reduce", None, source.n, add, r, workers + 1) for r in ranks}
    protocols = {r: WorkerProtocol(executors[r], pol, 0) for r in ranks}
    running = [False] * (workers + 1)
    exited = [False] * (workers + 1)
    last_arrival: dict = {}
    heap: list = []
    seq = 0
    stats = {"master_busy": 0.0, "work": 0.0}
    counts = {"messages": 0, "master_events": 0}
    master_free = 0.0
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

    def master_event(event_for, t) -> None:
        nonlocal master_free, done_at
        begin = t if t > master_free else master_free
        t0 = perf()
        out = master.handle(event_for(begin))
        spent = perf() - t0 if costs.master_event_s is None else costs.master_event_s
        end = send(0, out, begin + spent)
        stats["master_busy"] += end - begin
        counts["master_events"] += 1
        master_free = end
        if validate:
            master.validate()
        if master.done and done_at is None:
            done_at = end

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
    push(costs.tick_s, _TICK, 0)
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
            else:
                worker_message(a, source_rank, tag, body, t)
        elif kind == _DONE:
            running[a] = False
            kernel_step(a, send(a, protocols[a].handle(TaskRan(b, t)), t))
        else:  # the master's driver ticks when its mailbox is empty
            if not master.done:
                if t >= master_free:
                    master_event(lambda now: Tick(now), t)
                push(t + costs.tick_s, _TICK, 0)
    if not master.done or not all(exited[1:]):
        raise RuntimeError("simulation ran out of events before the call ended")
    if master.stop is None or master.stop.kind != "ok" or done_at is None:
        raise RuntimeError(f"simulated call ended with {master.stop}")
    trees = [master.tree] + [ex.tree for ex in executors.values()]
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
        wall_s=time.perf_counter() - wall0, costs=costs,
    )
