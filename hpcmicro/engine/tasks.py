"""Task ids, payload wrappers and decompositions.

A task id is a tuple of ints: root task i has id ``(i,)``, and the k-th child a
task spawns has the parent's id plus ``(k,)``. Python orders these tuples as a
pre-order walk of the spawn tree (parent, its children in spawn order, then the
next root), which is the order of ``map`` results and of every reduction.

Root tasks travel between ranks as *runs*: a contiguous range of root indices
with one priority. A decomposition (``Range``, ``Blocks``) is known on every
rank, so a run of one is just two integers; payloads of a plain list travel with
the run.
"""

from __future__ import annotations

import hashlib
import math
import pickle
from dataclasses import dataclass
from itertools import product
from operator import index as _as_index
from typing import Any

from ..errors import InvalidCall

__all__ = ["Task", "Range", "Blocks", "RootRun", "Spawned", "TaskSource"]


@dataclass(frozen=True)
class Task:
    """A payload with a priority: among ready tasks, higher priority runs first."""

    payload: Any
    priority: int = 0

    def __post_init__(self):
        if not isinstance(self.priority, int) or isinstance(self.priority, bool):
            raise InvalidCall(f"Task priority must be an int, got {self.priority!r}")


# A call's task count must fit a 64-bit index: CPython's len() needs < 2**63, and so do task ids on the wire.
MAX_TASKS = 2**63 - 1


def _check_count(count: int, what: str) -> None:
    if count > MAX_TASKS:
        raise InvalidCall(f"{what} gives {count} tasks, more than the {MAX_TASKS} (2**63 - 1) a call can hold")


def _nonnegative_int(value, what):
    try:
        value = _as_index(value)
    except TypeError:
        raise InvalidCall(f"{what} must be an integer, got {value!r}") from None
    if value < 0:
        raise InvalidCall(f"{what} must be >= 0, got {value}")
    return value


class Range:
    """Tasks covering [0, n) in chunks: payload i is ``range(i*chunk, min(n, (i+1)*chunk))``."""

    __slots__ = ("n", "chunk")

    def __init__(self, n: int, chunk: int = 1):
        self.n = _nonnegative_int(n, "Range n")
        self.chunk = _nonnegative_int(chunk, "Range chunk")
        if self.chunk == 0:
            raise InvalidCall("Range chunk must be > 0, got 0")
        _check_count(-(-self.n // self.chunk), f"Range({self.n}, {self.chunk})")

    def __len__(self):
        return -(-self.n // self.chunk)

    def payload(self, i: int) -> range:
        start = i * self.chunk
        return range(start, min(self.n, start + self.chunk))

    def __iter__(self):
        return (self.payload(i) for i in range(len(self)))

    def __repr__(self):
        return f"Range({self.n}, {self.chunk})"

    def __eq__(self, other):
        return isinstance(other, Range) and (self.n, self.chunk) == (other.n, other.chunk)

    def __hash__(self):
        return hash(("Range", self.n, self.chunk))


class Blocks:
    """Tasks tiling an N-D array of ``shape`` with blocks of ``block``.

    Payload i is a tuple of slices (C order over the block grid); edge blocks
    are cut to the array.
    """

    __slots__ = ("shape", "block", "_grid")

    def __init__(self, shape, block):
        shape = tuple(shape) if not isinstance(shape, int) else (shape,)
        block = tuple(block) if not isinstance(block, int) else (block,)
        if len(shape) != len(block):
            raise InvalidCall(
                f"Blocks shape {shape} has {len(shape)} dimensions but block {block} has {len(block)}"
            )
        if not shape:
            raise InvalidCall("Blocks shape must have at least one dimension")
        self.shape = tuple(_nonnegative_int(s, "Blocks shape entry") for s in shape)
        self.block = tuple(_nonnegative_int(b, "Blocks block entry") for b in block)
        if 0 in self.block:
            raise InvalidCall(f"Blocks block entries must be > 0, got {self.block}")
        self._grid = tuple(-(-s // b) for s, b in zip(self.shape, self.block))
        _check_count(math.prod(self._grid), f"Blocks({self.shape}, {self.block})")

    def __len__(self):
        return math.prod(self._grid)

    def payload(self, i: int) -> tuple:
        coords = []
        for g in reversed(self._grid):
            i, c = divmod(i, g)
            coords.append(c)
        coords.reverse()
        return tuple(
            slice(c * b, min(s, (c + 1) * b)) for c, b, s in zip(coords, self.block, self.shape)
        )

    def __iter__(self):
        for coords in product(*(range(g) for g in self._grid)):
            yield tuple(slice(c * b, min(s, (c + 1) * b)) for c, b, s in zip(coords, self.block, self.shape))

    def __repr__(self):
        return f"Blocks({self.shape}, {self.block})"

    def __eq__(self, other):
        return isinstance(other, Blocks) and (self.shape, self.block) == (other.shape, other.block)

    def __hash__(self):
        return hash(("Blocks", self.shape, self.block))


DECOMPOSITIONS = (Range, Blocks)


class RootRun:
    """Root tasks ``start .. stop-1`` of one priority, in a queue or a message.

    ``payloads`` is None for decompositions (each rank computes them); for a
    plain list it holds the payloads of ``first .. first+len-1`` (a run cut from
    a longer one keeps the longer list until it is sent).
    """

    __slots__ = ("start", "stop", "priority", "payloads", "first")

    def __init__(self, start, stop, priority=0, payloads=None, first=None):
        self.start = start
        self.stop = stop
        self.priority = priority
        self.payloads = payloads
        self.first = start if first is None else first

    def __len__(self):
        return self.stop - self.start

    @property
    def key(self):
        return (-self.priority, (self.start,))

    def split_back(self, k: int) -> "RootRun":
        """Cut off and return the last k tasks."""
        mid = self.stop - k
        tail = RootRun(mid, self.stop, self.priority, self.payloads, self.first)
        self.stop = mid
        return tail

    def split_front(self, k: int) -> "RootRun":
        """Cut off and return the first k tasks."""
        mid = self.start + k
        head = RootRun(self.start, mid, self.priority, self.payloads, self.first)
        self.start = mid
        return head

    def packed(self) -> "RootRun":
        """A detached copy carrying only its own payloads, for sending (the sender may go on cutting itself)."""
        if self.payloads is None:
            return RootRun(self.start, self.stop, self.priority)
        lo = self.start - self.first
        return RootRun(self.start, self.stop, self.priority, self.payloads[lo : lo + len(self)])

    def __getstate__(self):
        return (self.start, self.stop, self.priority, self.payloads, self.first)

    def __setstate__(self, state):
        self.start, self.stop, self.priority, self.payloads, self.first = state

    def __repr__(self):
        return f"RootRun({self.start}, {self.stop}, priority={self.priority})"


class Spawned:
    """One task created by ``ctx.spawn``."""

    __slots__ = ("id", "payload", "priority")

    def __init__(self, task_id, payload, priority=0):
        self.id = task_id
        self.payload = payload
        self.priority = priority

    def __len__(self):
        return 1

    @property
    def key(self):
        return (-self.priority, self.id)

    def packed(self) -> "Spawned":
        return self

    def __getstate__(self):
        return (self.id, self.payload, self.priority)

    def __setstate__(self, state):
        self.id, self.payload, self.priority = state

    def __repr__(self):
        return f"Spawned({self.id}, priority={self.priority})"


class TaskSource:
    """The root tasks of one call, as the master sees them.

    Built from what the user passed: a decomposition, or a finite iterable of
    payloads and ``Task`` wrappers (materialized here, once).
    """

    def __init__(self, tasks):
        if isinstance(tasks, DECOMPOSITIONS):
            self.decomposition = tasks
            self.payloads = None
            self.priorities = None
            self.n = len(tasks)
            return
        if isinstance(tasks, (str, bytes)) or not _is_iterable(tasks):
            raise InvalidCall(
                f"tasks must be a finite iterable of payloads, hm.Range or hm.Blocks; got {type(tasks).__name__}"
            )
        self.decomposition = None
        payloads, priorities = [], []
        for item in tasks:
            if isinstance(item, Task):
                payloads.append(item.payload)
                priorities.append(item.priority)
            else:
                payloads.append(item)
                priorities.append(0)
        self.payloads = payloads
        self.priorities = priorities if any(priorities) else None
        self.n = len(payloads)

    @staticmethod
    def describe(tasks) -> str:
        """What every rank can say about its ``tasks`` without consuming it."""
        if isinstance(tasks, DECOMPOSITIONS):
            return repr(tasks)
        try:
            return f"{type(tasks).__name__}[{len(tasks)}]"
        except TypeError:
            return type(tasks).__name__

    def check_picklable(self) -> str:
        """Raise InvalidCall naming the first payload that cannot be pickled.

        Returns a digest of the tasks (part of a checkpoint's job identity).
        """
        if self.payloads is None:
            return repr(self.decomposition)
        try:
            blob = pickle.dumps((self.payloads, self.priorities), protocol=pickle.HIGHEST_PROTOCOL)
            return hashlib.sha256(blob).hexdigest()
        except Exception:
            pass
        for i, p in enumerate(self.payloads):
            try:
                pickle.dumps(p, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                raise InvalidCall(
                    f"payload of task ({i},) cannot be pickled to send to a worker: "
                    f"{type(exc).__name__}: {exc}; payload {short_repr(p)}"
                ) from None
        raise InvalidCall("the task list cannot be pickled")

    def runs(self) -> list[RootRun]:
        """All root tasks as runs of equal priority, in id order."""
        if self.n == 0:
            return []
        if self.priorities is None:
            return [RootRun(0, self.n, 0, self.payloads, 0)]
        runs, start = [], 0
        pr = self.priorities
        for i in range(1, self.n + 1):
            if i == self.n or pr[i] != pr[start]:
                runs.append(RootRun(start, i, pr[start], self.payloads, 0))
                start = i
        return runs


def _is_iterable(obj) -> bool:
    try:
        iter(obj)
    except TypeError:
        return False
    return True


def short_repr(obj, limit: int = 120) -> str:
    try:
        text = repr(obj)
    except Exception as exc:  # a payload whose repr fails must not hide the real error
        text = f"<{type(obj).__name__}; repr failed: {exc}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
