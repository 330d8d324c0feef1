"""What one call did: per-worker counts and times, steals, wall time."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CallStats", "format_table"]


@dataclass
class CallStats:
    kind: str  # "map" or "map_reduce"
    policy: str
    ranks: int
    tasks: int  # tasks run, spawned ones included
    wall_s: float  # the call on the master, from entry to results in hand
    steals_brokered: int = 0
    master_messages: int = 0
    workers: list = field(default_factory=list)  # one dict per worker rank (WorkerStats.as_dict)
    failed: list = field(default_factory=list)  # [(task_id, traceback)] skipped under on_error="skip"
    restored: bool = False  # the call had completed before a restart; its result came from the checkpoint
    task_time: dict = field(default_factory=dict)  # count, mean, p50, p95, max of task durations (s)
    queue_samples: list = field(default_factory=list)  # (s since start, master pool, queued at workers)
    decisions: dict = field(default_factory=dict)  # the master's scheduling decisions: {"counts", "latest"}

    @classmethod
    def build(cls, kind, policy, ranks, master_info, worker_dicts, summaries, master_bytes_from):
        """Assemble a call's statistics (the same on every rank) from what the ranks report."""
        from .metrics import merge_summaries

        wall, created, brokered, messages, failed, samples = master_info
        workers = [dict(w) for w in worker_dicts if w is not None]
        received = [w.pop("bytes_from", {}) for w in workers]
        for w in workers:  # bytes a worker sent = bytes the others received from it
            r = w["rank"]
            w["bytes_out"] = master_bytes_from.get(r, 0) + sum(got.get(r, 0) for got in received)
        return cls(kind, policy, ranks, created, wall, brokered, messages, workers, failed=failed,
                   task_time=merge_summaries([s for s in summaries if s is not None]), queue_samples=samples)

    @property
    def master_messages_per_s(self) -> float:
        return self.master_messages / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def steals(self) -> int:
        """Steal answers that carried work."""
        return sum(w["steals_received"] for w in self.workers)

    @property
    def makespan_s(self) -> float:
        return max((w["wall_s"] for w in self.workers), default=self.wall_s)

    @property
    def busy_s(self) -> float:
        return sum(w["busy_s"] for w in self.workers)

    @property
    def efficiency(self) -> float:
        """Busy time over workers x makespan: 1.0 is a perfect balance."""
        n, span = len(self.workers), self.makespan_s
        return self.busy_s / (n * span) if n and span > 0 else 1.0

    def as_dict(self) -> dict:
        return {
            "kind": self.kind, "policy": self.policy, "ranks": self.ranks, "tasks": self.tasks,
            "wall_s": self.wall_s, "steals": self.steals, "steals_brokered": self.steals_brokered,
            "master_messages": self.master_messages, "efficiency": self.efficiency,
            "workers": self.workers, "failed": [[list(t), tb] for t, tb in self.failed],
            "restored": self.restored, "task_time": self.task_time,
            "master_messages_per_s": self.master_messages_per_s, "queue_samples": self.queue_samples,
            "decisions": self.decisions,
        }

    def __str__(self):
        return format_table(self.as_dict())


def format_table(d: dict) -> str:
    """The statistics of a call (``CallStats.as_dict()``, also as saved in result files) as text."""
    t = d.get("task_time") or {}
    lines = [
        f"{d['kind']} policy={d['policy']} ranks={d['ranks']} tasks={d['tasks']} wall={d['wall_s']:.4f}s "
        f"steals={d['steals']} efficiency={d['efficiency']:.3f} master msgs/s={d.get('master_messages_per_s', 0):.0f}",
    ]
    if t.get("count"):
        lines.append(f"task time: mean {_t(t['mean'])} p50 {_t(t['p50'])} p95 {_t(t['p95'])} max {_t(t['max'])}")
    lines.append(f"{'rank':>5} {'tasks':>9} {'busy_s':>9} {'idle_s':>9} {'comm_s':>8} {'util':>6} "
                 f"{'steals_in':>9} {'given':>6} {'MB_in':>8} {'MB_out':>8}")
    for w in d["workers"]:
        lines.append(
            f"{w['rank']:>5} {w['tasks']:>9} {w['busy_s']:>9.4f} {w['idle_s']:>9.4f} {w.get('comm_s', 0):>8.4f} "
            f"{w.get('utilization', 0):>6.1%} {w['steals_received']:>9} {w['tasks_given']:>6} "
            f"{w.get('bytes_in', 0) / 1e6:>8.3f} {w.get('bytes_out', 0) / 1e6:>8.3f}"
        )
    if d.get("failed"):
        lines.append(f"failed tasks: {len(d['failed'])} (first: {d['failed'][0][0]})")
    lines.extend(format_decisions(d.get("decisions") or {}))
    return "\n".join(lines)


SHOW_DECISIONS = 12


def format_decisions(decisions: dict, show: int = SHOW_DECISIONS) -> list[str]:
    """The master's scheduling decisions: counts of each kind, then the latest ones, who and why."""
    counts = decisions.get("counts") or {}
    if not counts:
        return []
    latest = list(decisions.get("latest") or [])[-show:]
    out = [f"decisions: {', '.join(f'{k} {n}' for k, n in sorted(counts.items()))}"
           + (f" (the last {len(latest)}:)" if latest else "")]
    for when, kind, details in latest:
        out.append(f"  {when:>9.4f}s {kind}: {_describe_decision(kind, details)}")
    return out


def _describe_decision(kind: str, d: dict) -> str:
    if kind == "steal":
        return (f"worker {d['thief']} ({d['asked']}) takes {d['tasks']} tasks from worker {d['victim']}, "
                f"which had {d['victim_queued']} queued ({_t(d['victim_work_s'])} of work): the most of anyone")
    if kind == "chunk":
        return f"worker {d['worker']} ({d['asked']}) gets {d['tasks']} tasks from the pool, {d['pool_left']} left"
    if kind == "seed":
        return f"worker {d['worker']} gets {d['tasks']} tasks to start with"
    return ", ".join(f"{k} {v}" for k, v in d.items())


def _t(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}us"
    return f"{seconds * 1e3:.2f}ms" if seconds < 1 else f"{seconds:.2f}s"
