"""A queue of ready tasks ordered by (-priority, task id).

Used for the master's pool and for each worker's local queue. The owner runs
from the front (highest priority, then lowest id: a depth-first walk of the
spawn tree); thieves take from the back (the latest roots, which carry the
largest subtrees). Entries are ``RootRun`` (many root tasks) or ``Spawned``.

The list is kept in *reverse* order so that the front is ``entries[-1]`` and
popping it is O(1).
"""

from __future__ import annotations

from bisect import insort

from .tasks import Spawned

__all__ = ["TaskQueue"]


class _Descending:
    """Sort key wrapper that reverses the order of an entry's key."""

    __slots__ = ("key",)

    def __init__(self, entry):
        self.key = entry.key

    def __lt__(self, other):
        return other.key < self.key


class TaskQueue:
    def __init__(self, entries=()):
        self._entries: list = []  # back ... front
        self._count = 0
        for e in entries:
            self.push(e)

    def __len__(self):
        """Number of tasks (not entries)."""
        return self._count

    def __bool__(self):
        return self._count > 0

    def push(self, entry) -> None:
        if len(entry) == 0:
            return
        entries = self._entries
        # Fast path: a spawned child goes to the front in depth-first runs.
        if not entries or entries[-1].key > entry.key:
            entries.append(entry)
        else:
            insort(entries, entry, key=_Descending)
        self._count += len(entry)

    def push_many(self, entries) -> None:
        for e in entries:
            self.push(e)

    def front(self):
        """The entry that runs next, or None."""
        return self._entries[-1] if self._entries else None

    def pop(self):
        """Remove the front task; return ``(task_id, payload_or_None, priority, run)``.

        ``run`` is the RootRun the task came from (the caller computes a
        decomposition payload from it) or None for a spawned task.
        """
        entries = self._entries
        front = entries[-1]
        self._count -= 1
        if isinstance(front, Spawned):
            entries.pop()
            return front.id, front.payload, front.priority, None
        i = front.start
        front.start = i + 1  # keeps its place: only children of i could sort between
        payload = None if front.payloads is None else front.payloads[i - front.first]
        if front.start == front.stop:
            entries.pop()
        return (i,), payload, front.priority, front

    def take_front(self, k: int) -> list:
        """Remove and return about k tasks from the front (the master's chunks)."""
        out, entries = [], self._entries
        while k > 0 and entries:
            front = entries[-1]
            n = len(front)
            if n <= k:
                out.append(entries.pop())
            else:
                out.append(front.split_front(k))
                n = k
            k -= n
            self._count -= n
        return out

    def take_back(self, k: int) -> list:
        """Remove and return about k tasks from the back (a steal), in queue order."""
        out, entries = [], self._entries
        while k > 0 and entries:
            back = entries[0]
            n = len(back)
            if n <= k:
                out.append(entries.pop(0))
            else:
                out.append(back.split_back(k))
                n = k
            k -= n
            self._count -= n
        out.reverse()
        return out

    def take_all(self) -> list:
        """Remove and return every entry, front first."""
        out = self.entries()
        self.clear()
        return out

    def clear(self) -> int:
        n = self._count
        self._entries.clear()
        self._count = 0
        return n

    def entries(self) -> list:
        """The entries in execution order (front first); for checkpoints and tests."""
        return list(reversed(self._entries))
