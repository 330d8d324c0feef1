"""Scheduling policies: who gets how much work, and who steals from whom.

A policy is a complete plugin: the master and the workers ask it every
scheduling question through these hooks, and branch on nothing else.

- ``seed(pool, capacities)``: the first hand-out, one list of entries per worker.
- ``chunk(pool, share, mean_task_s)``: how many tasks of the master's pool a
  worker that asks (LOW/IDLE) gets; ``share`` is its fraction of the workers'
  measured speed.
- ``pick_victim(thief, views)``: whom an asking worker steals from once the
  pool is empty (None: nobody).
- ``steal_size(queued)``: how many of its queued tasks a victim gives.
- ``wants_more(queued, mean_task_s)``: whether a busy worker asks for more now.

Cost model ("steal"). A message costs a few microseconds on a node and tens
across nodes, a task costs whatever the kernel costs. So:
- Seed half of the root tasks right away (all of them to a lone worker), in contiguous shares proportional to
  each worker's capacity: with no measurement yet, this is what guided
  self-scheduling would hand out first, and it costs one message per worker.
- Hand out the rest on request in chunks of ceil(pool * share / 2) (guided
  self-scheduling: few messages while the pool is large, small chunks near the
  end), capped at ``batch_seconds`` of measured work (at least 2 tasks) so that
  the last chunks bound the imbalance at the end of a call.
- A worker asks before it runs dry (less than ``low_water_seconds`` of queued
  work, or fewer than 2 tasks left), so a round trip never leaves it idle.
- Once the pool is empty, an idle worker steals half of the queue of the worker
  with most queued work (tasks times mean task time), brokered by the master
  that sees every queue length.
Task boundaries never move; only the number of tasks per message adapts.

"static": contiguous shares of all root tasks up front, in task-id order
whatever the priorities, proportional to capacity; no balancing; spawned tasks
stay where they were spawned. The baseline that benchmarks compare against.
Only work handed back by a worker whose task overran ``task_timeout`` goes
round again (in equal shares to the workers that ask), since otherwise it would
never run.
"""

from __future__ import annotations

import math

from ..constants import POLICY_NAMES
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


def split_in_order(entries, counts) -> list[list]:
    """Cut a list of entries (in the order given) into consecutive pieces of ``counts`` tasks."""
    out, i = [], 0
    entries = list(entries)
    for k in counts:
        piece = []
        while k > 0 and i < len(entries):
            e = entries[i]
            if len(e) <= k:
                piece.append(e)
                k -= len(e)
                i += 1
            else:
                piece.append(e.split_front(k))
                k = 0
        out.append(piece)
    return out


class Policy:
    """The hooks; see the module docstring. Views are the master's ``WorkerView`` objects."""

    name = "?"

    def seed(self, pool, capacities) -> list[list]:
        raise NotImplementedError

    def chunk(self, pool: int, share: float, mean_task_s: float, capacity: float = 1.0) -> int:
        raise NotImplementedError

    # The fewest queued tasks a victim may have (pick_victim never picks one with fewer).
    min_victim_queued: float = math.inf
    # Over group masters (engine/group.top_policy): a "worker" of capacity n is n workers, so the
    # smallest chunk and the fewest queued tasks of a victim are per unit of capacity.
    per_capacity: bool = False

    def pick_victim(self, thief, views):
        """The view to steal from for ``thief``, or None. ``views`` (an iterable, read once) come most
        queued work first, ties in rank order: a policy that wants the most work stops at the first
        it accepts, so a steal costs O(log n) at 10**4 workers, not a scan. It must be monotone: a
        thief that asks for less (IDLE rather than LOW, less queued work of its own) never gets None
        where one asking more gets a victim. The master stops trying thieves at the first None
        (master._serve_wanting)."""
        return None

    def steal_size(self, queued: int) -> int:
        return 0

    def wants_more(self, queued: int, mean_task_s: float) -> bool:
        return False

    def __repr__(self):
        return f"{type(self).__name__}()"


class StaticPolicy(Policy):
    name = "static"

    def seed(self, pool, capacities):
        entries = sorted(pool.take_all(), key=lambda e: e.key[1])  # id order, whatever the priorities
        return split_in_order(entries, proportional_split(sum(len(e) for e in entries), capacities))

    def chunk(self, pool, share, mean_task_s, capacity=1.0):
        return max(1, min(pool, math.ceil(pool * share)))  # only handed-back work is ever in the pool


class StealPolicy(Policy):
    name = "steal"
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
    # A LOW (not yet idle) thief only takes from a queue with this many times its
    # own queued work and at least this many tasks, so neighbours don't trade back and forth.
    LOW_THIEF_FACTOR = 2.0
    LOW_THIEF_MIN_QUEUED = 4
    IDLE_THIEF_MIN_QUEUED = 2
    min_victim_queued = min(IDLE_THIEF_MIN_QUEUED, LOW_THIEF_MIN_QUEUED)

    def seed(self, pool, capacities):
        if len(capacities) == 1:  # nobody to balance with: hand-outs on request would only cost round trips
            return [pool.take_all()]
        # Half the pool, but at least one task for every worker while there are enough: a worker
        # seeded with nothing costs the call a request's round trip before it starts.
        n = max(math.ceil(len(pool) * self.seed_fraction), min(len(pool), len(capacities)))
        counts = proportional_split(n, capacities)
        return [pool.take_front(k) if k else [] for k in counts]

    def chunk(self, pool, share, mean_task_s, capacity=1.0):
        k = math.ceil(pool * share / 2)
        if mean_task_s > 0:
            k = min(k, max(self.MIN_CHUNK, int(self.batch_seconds / mean_task_s)))
        # Never less than MIN_CHUNK per unit of capacity: a group master of n workers (capacity n)
        # asking for fewer than n tasks would be back at once, and the top's requests are its load.
        if self.per_capacity:
            k = max(k, math.ceil(self.MIN_CHUNK * capacity))
        return max(1, min(k, pool))

    def pick_victim(self, thief, views):
        from .events import State

        if thief.state == State.IDLE:
            min_queued, factor = self.IDLE_THIEF_MIN_QUEUED, 0.0
        else:
            min_queued, factor = self.LOW_THIEF_MIN_QUEUED, self.LOW_THIEF_FACTOR
        for v in views:  # most queued work first: the first acceptable one is the best
            if v is thief or not v.active or v.queued < min_queued:
                continue
            work = v.queued_work
            return v if work > 0.0 and work >= factor * thief.queued_work else None
        return None

    def steal_size(self, queued: int) -> int:
        return queued // 2  # the victim keeps the (smaller) front half it is about to run

    def wants_more(self, queued: int, mean_task_s: float) -> bool:
        return queued < self.LOW_WATER_TASKS or queued * mean_task_s < self.low_water_seconds


POLICIES = {"static": StaticPolicy, "steal": StealPolicy}
assert tuple(sorted(POLICIES)) == tuple(sorted(POLICY_NAMES))


def get_policy(policy) -> Policy:
    if isinstance(policy, Policy):
        return policy
    try:
        return POLICIES[policy]()
    except (KeyError, TypeError):
        raise InvalidCall(f"unknown policy {policy!r}: use one of {', '.join(sorted(POLICIES))}") from None
