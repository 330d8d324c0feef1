"""A worker's ready tasks: last-in-first-out for its own work, oldest-first for thieves.

Tasks wait in *groups*: the children ``next .. stop-1`` of one frame (or root
tasks of the virtual root) with one priority. A task's children are pushed as
one group on top of its priority's stack, so the owner runs depth-first
(work-first), in pre-order, at O(1) per task, and never builds a task id.
Thieves take from the bottom of the lowest priority's stack, the tail of its
oldest group: the tasks that would run last, with the largest subtrees. That
is also where groups from outside (chunks from the master, stolen tasks, a
resumed cut) are put, so the owner first finishes what it was doing.

Ids are built only for tasks that leave (``take_back``, ``entries``): a group's
frame knows its path (``frames.Frame.path``). Priorities: the highest
priority with a non-empty stack runs first; among equal priorities, depth-first.
"""

from __future__ import annotations

from bisect import insort

from .frames import Frame, ghost_frame
from .tasks import RootRun, Spawned

__all__ = ["Group", "LocalQueue"]


class Group:
    """Pending children ``next .. stop-1`` of ``frame``, all of ``priority``.

    ``payloads[j - first]`` is child j's payload; None for root tasks of a
    decomposition (each rank computes them). ``fresh``: from outside and not yet
    started (its first task starts a new run of map results).
    """

    __slots__ = ("frame", "payloads", "first", "next", "stop", "priority", "fresh")

    def __init__(self, frame, payloads, first, start, stop, priority=0, fresh=False):
        self.frame = frame
        self.payloads = payloads
        self.first = first
        self.next = start
        self.stop = stop
        self.priority = priority
        self.fresh = fresh

    def __len__(self):
        return self.stop - self.next

    @property
    def is_roots(self) -> bool:
        return self.frame.offset == 0

    def wire(self, start: int, stop: int) -> list:
        """Tasks ``start .. stop-1`` as message entries (ids built here)."""
        if self.is_roots:
            payloads = None if self.payloads is None else self.payloads[start - self.first: stop - self.first]
            return [RootRun(start, stop, self.priority, payloads)]
        path, payloads, first = self.frame.path(), self.payloads, self.first
        return [Spawned(path + (j,), payloads[j - first], self.priority) for j in range(start, stop)]

    def __repr__(self):
        return f"Group({self.frame!r}, {self.next}..{self.stop}, priority={self.priority})"


class LocalQueue:
    def __init__(self, root: Frame):
        self.root = root  # the virtual root's frame: root tasks are its children
        self._stacks: dict[int, list] = {}
        self._priorities: list[int] = []  # of non-empty stacks, ascending
        self._count = 0
        self.uniform = True  # no task of a priority other than 0 has been queued (map results stay in pre-order)

    def __len__(self):
        return self._count

    def __bool__(self):
        return self._count > 0

    # -- the owner ---------------------------------------------------------------------
    def push_children(self, frame: Frame, payloads: list, priority: int, overrides: dict | None = None) -> None:
        """Queue a task's children on top: ``payloads`` in spawn order (the list is kept, not copied), all
        of ``priority`` but those in ``overrides`` ({index: priority})."""
        if not overrides:
            self._stack(priority).append(Group(frame, payloads, 0, 0, len(payloads), priority))
        else:  # mixed priorities: one group per child, the first on top of its stack
            for j in reversed(range(len(payloads))):
                p = overrides.get(j, priority)
                self._stack(p).append(Group(frame, [payloads[j]], j, j, j + 1, p))
        self._count += len(payloads)

    def pop(self):
        """The next task: ``(group, index, payload, fresh)``; payload None for a decomposition's root task,
        ``fresh`` True for the first task of a group from outside."""
        priority = self._priorities[-1]
        stack = self._stacks[priority]
        g = stack[-1]
        j = g.next
        g.next = j + 1
        if g.next == g.stop:
            stack.pop()
            if not stack:
                self._drop(priority)
        self._count -= 1
        fresh = g.fresh
        if fresh:
            g.fresh = False
        return g, j, (None if g.payloads is None else g.payloads[j - g.first]), fresh

    def top(self) -> Group | None:
        if not self._count:
            return None
        return self._stacks[self._priorities[-1]][-1]

    def take_top(self, k: int) -> tuple[Group, int, int, bool]:
        """Up to k tasks from the top group (its next ones): ``(group, start, stop, fresh)``."""
        priority = self._priorities[-1]
        stack = self._stacks[priority]
        g = stack[-1]
        start = g.next
        stop = min(g.stop, start + k)
        g.next = stop
        if stop == g.stop:
            stack.pop()
            if not stack:
                self._drop(priority)
        self._count -= stop - start
        fresh = g.fresh
        g.fresh = False
        return g, start, stop, fresh

    def push_top(self, group: Group) -> None:
        """Put (part of) a group back on top of its stack: tasks taken but not run."""
        self._stack(group.priority).append(group)
        self._count += len(group)

    # -- from outside --------------------------------------------------------------------
    def push_entries(self, entries) -> None:
        """Queue message entries (RootRun, Spawned; front first) at the bottom: they run after the owner's."""
        groups: list = []
        for e in entries:
            if not len(e):
                continue
            if isinstance(e, RootRun):
                groups.append(Group(self.root, e.payloads, e.first, e.start, e.stop, e.priority, fresh=True))
                continue
            parent, j = e.id[:-1], e.id[-1]
            last = groups[-1] if groups else None
            if (last is not None and not last.is_roots and last.frame.path() == parent and last.stop == j
                    and last.priority == e.priority and len(last.payloads) == j - last.first):
                last.payloads.append(e.payload)  # siblings in a row share one group
                last.stop = j + 1
            else:
                groups.append(Group(ghost_frame(parent), [e.payload], j, j, j + 1, e.priority, fresh=True))
        for g in groups:  # each below the last: the first entry ends up nearest the top, running first
            self._stack(g.priority).insert(0, g)
            self._count += len(g)

    # -- thieves, snapshots --------------------------------------------------------------
    def take_back(self, k: int) -> tuple[list, list]:
        """About k tasks from the bottom of the lowest priority: ``(entries, frames cut)``.

        The frames whose children left must fold by id from now on (their
        subtrees can no longer complete on this worker).
        """
        entries: list = []
        cut: list = []
        while k > 0 and self._count:
            priority = self._priorities[0]
            stack = self._stacks[priority]
            g = stack[0]
            start = max(g.next, g.stop - k)
            entries[:0] = g.wire(start, g.stop)  # older (lower) groups' tasks run later: they go last
            taken = g.stop - start
            g.stop = start
            k -= taken
            self._count -= taken
            if not g.is_roots:
                cut.append(g.frame)
            if not len(g):
                stack.pop(0)
                if not stack:
                    self._drop(priority)
        return entries, cut

    def entries(self) -> list:
        """Every pending task as message entries, in the order they would run."""
        out: list = []
        for p in reversed(self._priorities):
            for g in reversed(self._stacks[p]):
                out.extend(g.wire(g.next, g.stop))
        return out

    def frames(self) -> list:
        """The frames of the queued groups (with their ancestors, the frames still open here)."""
        return [g.frame for p in self._priorities for g in self._stacks[p]]

    def validate(self) -> None:
        assert self._priorities == sorted(self._stacks), "priorities out of step with the stacks"
        assert all(self._stacks[p] for p in self._priorities), "an empty stack is kept"
        assert all(len(g) > 0 for p in self._priorities for g in self._stacks[p]), "an empty group is kept"
        assert self._count == sum(len(g) for p in self._priorities for g in self._stacks[p]), "task count drifted"

    def clear(self) -> int:
        n = self._count
        self._stacks.clear()
        self._priorities.clear()
        self._count = 0
        return n

    # -- internals -----------------------------------------------------------------------
    def _stack(self, priority: int) -> list:
        stack = self._stacks.get(priority)
        if stack is None:
            stack = self._stacks[priority] = []
            insort(self._priorities, priority)
            if priority != 0:
                self.uniform = False
        return stack

    def _drop(self, priority: int) -> None:
        del self._stacks[priority]
        self._priorities.remove(priority)
