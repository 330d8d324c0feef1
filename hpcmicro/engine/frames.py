"""Spawn-tree frames: a task's place in the tree without carrying its id, and the local fold.

A worker runs the subtree of a task depth-first. For each task that spawned
children it keeps a ``Frame``: a pointer to its parent's frame and its index
among the parent's children. A task's id (the path from the root) is never
built per task: ``Frame.path()`` builds it only when a task crosses ranks (a
steal, a snapshot, a hand-back), an error names it, or a trace records it; and
caches it, so a chain of ancestors is walked once.

Reductions fold in the same fixed combine tree as ``combine.PartialTree``: a
node's sequence is its own result, then each child's subtree value, combined
pairwise over power-of-two-aligned slot ranges. While a frame's slots arrive in
order (the depth-first walk of one worker) its fold is a binary counter: a
stack of completed blocks, two equal blocks combine at once, and the frame's
value is the right fold of the stack when the last slot arrives. O(1)
amortized per task, no dictionary, no id. When a slot cannot arrive in order (a
thief took some of the frame's children, priorities reordered them, a snapshot
must ship the partial state) the frame *splits*: its id is built, its blocks go
into the worker's PartialTree (keyed by id, as before), and so do its
ancestors', since their subtrees can no longer complete here either. Either
way every node combines the same two children: the value is bitwise the same
for any schedule.
"""

from __future__ import annotations

from .combine import CombineError, PartialTree, _first_task

__all__ = ["Frame", "root_frame", "ghost_frame", "LocalFold"]


class Frame:
    """A task whose children are still running or pending on this worker (or a ghost, below).

    ``offset``: the slot of child 0 in this node's sequence: 1 (slot 0 is the
    task's own result), or 0 for the virtual root, whose slots are the root
    tasks. A *ghost* stands for a node that lives elsewhere (the virtual root,
    or the parent of stolen tasks): it is split from the start and only
    gives its id to the tasks below it.
    """

    __slots__ = ("parent", "index", "_path", "n_slots", "filled", "acc", "split", "offset")

    def __init__(self, parent, index, n_slots, own_value):
        self.parent = parent
        self.index = index  # among the parent's children
        self._path = None
        self.n_slots = n_slots  # 1 + number of children
        self.filled = 1  # slots folded so far (in order); slot 0 is the task's own result
        self.acc = [own_value]  # reduce mode: the binary counter; block widths are the set bits of ``filled``
        self.split = False
        self.offset = 1

    def path(self) -> tuple:
        """This task's id; built from the ancestors once, then cached."""
        if self._path is not None:
            return self._path
        chain = []
        f = self
        while f._path is None:
            chain.append(f)
            f = f.parent
        path = f._path
        for f in reversed(chain):
            path = path + (f.index,)
            f._path = path
        return path

    def child_path(self, index: int) -> tuple:
        """The id of this frame's child ``index`` (a root task's, for the virtual root)."""
        return self.path() + (index,)

    def __repr__(self):
        return f"Frame({self._path or '?'}, slots={self.filled}/{self.n_slots}, split={self.split})"


def ghost_frame(path: tuple, offset: int = 1) -> Frame:
    f = Frame.__new__(Frame)
    f.parent, f.index, f._path = None, None, path
    f.n_slots, f.filled, f.acc, f.split, f.offset = None, 0, None, True, offset
    return f


def root_frame() -> Frame:
    """The virtual root: its children are the root tasks, ids ``(i,)``."""
    return ghost_frame((), offset=0)


def _levels(filled: int) -> list:
    """The levels of a binary counter's blocks after ``filled`` values, bottom (widest) first."""
    return [lvl for lvl in range(filled.bit_length() - 1, -1, -1) if filled >> lvl & 1]


class LocalFold:
    """The reduction on one worker: local frames fold in place, split ones go to ``tree``."""

    __slots__ = ("op", "tree")

    def __init__(self, tree: PartialTree):
        self.op = tree.op
        self.tree = tree

    def complete(self, frame: Frame, index: int, value) -> None:
        """The subtree of ``frame``'s child ``index`` is complete with ``value``."""
        op = self.op
        while True:
            if frame.split:
                self.tree._add(frame.path(), 0, index + frame.offset, value)
                return
            slot = index + 1
            if slot != frame.filled:  # out of order (priorities): fold this node by id from now on
                self.split(frame)
                continue
            acc = frame.acc
            level = 0
            while (slot >> level) & 1:  # a right sibling: its left one is the top of the stack
                left = acc.pop()
                try:  # the op inline, not through a helper: this runs for every other task
                    value = op(left, value)
                except Exception as exc:
                    raise self._combine_error(frame, level, (slot >> level) - 1, exc) from exc
                level += 1
            acc.append(value)
            frame.filled = slot + 1
            if frame.filled < frame.n_slots:
                return
            # The node is complete: the right fold of the stack (blocks past the end are empty).
            value = acc.pop()
            while acc:
                left = acc.pop()
                try:
                    value = op(left, value)
                except Exception as exc:
                    raise self._tail_error(frame, len(acc), exc) from exc
            frame.acc = None
            frame, index = frame.parent, frame.index

    def complete_run(self, frame: Frame, start: int, values: list) -> None:
        """``complete`` for children ``start, start + 1, ...`` of ``frame`` in turn, whose subtrees are
        complete with ``values`` (leaves run back to back): the binary counter in one loop."""
        slot = start + 1
        n = len(values)
        if frame.split or slot != frame.filled or slot + n >= frame.n_slots:  # by id, or it ends the frame
            complete = self.complete
            for k, value in enumerate(values):
                complete(frame, start + k, value)
            return
        acc, op = frame.acc, self.op
        for value in values:
            level = 0
            while (slot >> level) & 1:  # as in complete
                left = acc.pop()
                try:
                    value = op(left, value)
                except Exception as exc:
                    raise self._combine_error(frame, level, (slot >> level) - 1, exc) from exc
                level += 1
            acc.append(value)
            slot += 1
        frame.filled = slot

    def split(self, frame: Frame) -> None:
        """From now on ``frame`` and its ancestors fold by id in the PartialTree (their blocks move there)."""
        tree = self.tree
        f = frame
        while not f.split:
            path = f.path()
            tree.lengths[path] = f.n_slots
            start = 0
            for level, value in zip(_levels(f.filled), f.acc):  # left to right: blocks tile [0, filled)
                tree._add(path, level, start >> level, value)
                start += 1 << level
            f.acc = None
            f.split = True
            f = f.parent

    @staticmethod
    def _combine_error(frame, level, left_index, exc) -> CombineError:
        """The op failed on the blocks ``left_index`` and ``left_index + 1`` of width ``2**level``."""
        width = 1 << level
        node = frame.path()
        return CombineError(_first_task(node, left_index * width), _first_task(node, (left_index + 1) * width), exc)

    @staticmethod
    def _tail_error(frame, position, exc) -> CombineError:
        """The op failed folding the stack's block ``position`` (from the bottom) into those above it."""
        levels = _levels(frame.filled)
        left_start = sum(1 << lvl for lvl in levels[:position])  # the blocks below it tile [0, left_start)
        node = frame.path()
        return CombineError(_first_task(node, left_start), _first_task(node, left_start + (1 << levels[position])),
                            exc)
