"""A consistent cut of one call: what a checkpoint (or a ULFM rollback) restarts from.

Every task of the call is either finished (its result is in the cut) or pending
(it is listed to run), never both. ``io/checkpoint.py`` stores these in HDF5.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CallState"]


@dataclass
class CallState:
    """Where one call of a Runtime stands."""

    index: int
    identity: str  # job_identity() of the call
    kind: str  # "map" or "map_reduce"
    n_roots: int
    complete: bool = False
    result: Any = None  # the call's value once complete
    created: int = 0  # tasks created so far (roots + spawned)
    finished: int = 0  # tasks finished so far
    # map: finished results, as runs of tasks consecutive in pre-order (the order of map's list)
    segments: list = field(default_factory=list)  # [(id of the run's first task, [values...]), ...]
    # map_reduce: completed blocks of the combine tree
    blocks: dict = field(default_factory=dict)  # {(node, level, index): value}
    lengths: dict = field(default_factory=dict)  # {node: slot count}
    # still to run
    pending_roots: list = field(default_factory=list)  # [(start, stop, priority), ...]
    pending_spawned: list = field(default_factory=list)  # [(task_id, payload, priority), ...]
    failed: list = field(default_factory=list)  # [(task_id, traceback text), ...] (on_error="skip")
    code: dict = field(default_factory=dict)  # codehash.code_parts() of the kernel and op: {what: digest}

    _PICKLED = ("result", "segments", "blocks", "lengths", "pending_spawned", "failed", "code")
