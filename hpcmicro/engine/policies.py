"""Scheduling policies: how much work each worker gets, and when.

Cost model ("steal"). A message costs a few microseconds on a node and tens
across nodes, a task costs whatever the kernel costs. So:
- Seed half of the root tasks right away, in contiguous shares proportional to
  each worker's capacity: with no measurement yet, this is what guided
  self-scheduling would hand out first, and it costs one message per worker.
- Hand out the rest on request in chunks of ceil(pool * share / 2) (guided
  self-scheduling: few messages while the pool is large, small chunks near the
  end), capped at ``batch_seconds`` of measured work (at least 2 tasks) so that the last chunks
  bound the imbalance at the end of a call.
- A worker asks before it runs dry (less than ``low_water_seconds`` of queued work, or fewer than 2 tasks
  left), so a round trip never leaves it idle.
- Once the pool is empty, an idle worker steals half of the queue of the worker
  with most queued work (by tasks times mean task time), brokered by the master
  that sees every queue length.
Task boundaries never move; only the number of tasks per message adapts.

"static": contiguous shares of all root tasks up front, proportional to
capacity; no balancing; spawned tasks stay where they were spawned. The
baseline that benchmarks compare against.
"""

from __future__ import annotations

import math

from ..errors import InvalidCall

__all__ = ["Policy", "StaticPolicy", "StealPolicy", "get_policy", "proportional_split"]


def proportional_split(total: int, weights) -> list[int]:
    """Split ``total`` into integer parts proportional to ``weights`` (largest remainder)."""
    wsum = float(sum(weights))
    exact = [total * w / wsum for w in weights]
    parts = [math.floor(x) for x in exact]
    short = total - sum(parts)
    by_remainder = sorted(range(len(weights)), key=lambda i: (parts[i] - exact[i], i))
    for i in by_remainder[:short]:
        parts[i] += 1
    return parts


class Policy:
    name = "?"
    balances = False  # hand out work after the seed and broker steals
    low_water_seconds = 0.0

    def seed_counts(self, n_tasks: int, capacities) -> list[int]:
        raise NotImplementedError

    def chunk(self, pool: int, share: float, mean_task_s: float) -> int:
        return 0

    def wants_more(self, queued: int, mean_task_s: float) -> bool:
        return False


class StaticPolicy(Policy):
    name = "static"

    def seed_counts(self, n_tasks, capacities):
        return proportional_split(n_tasks, capacities)


class StealPolicy(Policy):
    name = "steal"
    balances = True
    seed_fraction = 0.5
    # A chunk carries at most this much measured work (but at least
    # MIN_CHUNK tasks): it bounds the imbalance the last chunks can leave, and
    # is ~1000x a message's cost, so messages stay cheap.
    batch_seconds = 0.02
    MIN_CHUNK = 2
    # Ask for more while this much work (and at least LOW_WATER_TASKS tasks) is
    # queued: covers a request's round trip with margin, also when ranks share
    # cores and the master waits for a time slice (milliseconds, not microseconds).
    low_water_seconds = 0.01
    LOW_WATER_TASKS = 2

    def seed_counts(self, n_tasks, capacities):
        return proportional_split(math.ceil(n_tasks * self.seed_fraction), capacities)

    def chunk(self, pool, share, mean_task_s):
        k = math.ceil(pool * share / 2)
        if mean_task_s > 0:
            k = min(k, max(self.MIN_CHUNK, int(self.batch_seconds / mean_task_s)))
        return max(1, min(k, pool))

    def wants_more(self, queued: int, mean_task_s: float) -> bool:
        """Whether a worker with ``queued`` tasks waiting should ask for more now."""
        return queued < self.LOW_WATER_TASKS or queued * mean_task_s < self.low_water_seconds


POLICIES = {"static": StaticPolicy, "steal": StealPolicy}


def get_policy(policy) -> Policy:
    if isinstance(policy, Policy):
        return policy
    try:
        return POLICIES[policy]()
    except (KeyError, TypeError):
        raise InvalidCall(f"unknown policy {policy!r}: use one of {', '.join(sorted(POLICIES))}") from None
