"""What one call did: per-worker counts and times, steals, wall time."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CallStats"]


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
            "restored": self.restored,
        }

    def __str__(self):
        lines = [
            f"{self.kind} policy={self.policy} ranks={self.ranks} tasks={self.tasks} "
            f"wall={self.wall_s:.4f}s steals={self.steals} efficiency={self.efficiency:.3f}",
            f"{'rank':>5} {'tasks':>9} {'busy_s':>9} {'idle_s':>9} {'stolen_in':>9} {'given':>6}",
        ]
        for w in self.workers:
            lines.append(
                f"{w['rank']:>5} {w['tasks']:>9} {w['busy_s']:>9.4f} {w['idle_s']:>9.4f} "
                f"{w['tasks_received']:>9} {w['tasks_given']:>6}"
            )
        return "\n".join(lines)
