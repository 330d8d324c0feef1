"""Deterministic reductions: the ops, the fixed combine tree, the final collective.

The combine order is a function of task ids alone, never of which rank ran
what or when. Every node x of the spawn tree has a sequence of slots: its own
result, then the values of its children's subtrees in spawn order (the virtual
root ``()`` has the root tasks as slots and no own result). A sequence of L
slots is combined over the fixed dyadic tree on [0, 2^K) (2^K >= L): block
(level k, index j) covers slots [j*2^k, (j+1)*2^k); a block is
``op(left, right)``, or just ``left`` when ``right`` lies wholly past L.

Any rank holding a complete block can compute its value, and every rank
computes it identically, so partial results can be merged in any order and on
any rank: the answer is bitwise the same for any number of ranks, policy or
steal order. With an associative op the tree equals the left fold in id order,
so non-commutative ops are fine.
"""

from __future__ import annotations

import operator
import socket
import traceback

from ..constants import OP_NAMES
from ..errors import InvalidCall
from ..identity import describe_callable

__all__ = ["resolve_op", "PartialTree", "merge_parts", "CombineError", "SKIPPED", "skip_aware", "OPS"]


def _is_array(x) -> bool:
    return getattr(x, "ndim", 0) > 0 and hasattr(x, "__array_ufunc__")


# NumPy is imported only when an array is combined (an array's owner has imported it already):
# ``import hpcmicro`` and calls on plain Python values never load it.
def _min(a, b):
    if _is_array(a) or _is_array(b):
        import numpy

        return numpy.minimum(a, b)
    return min(a, b)


def _max(a, b):
    if _is_array(a) or _is_array(b):
        import numpy

        return numpy.maximum(a, b)
    return max(a, b)


OPS = {"sum": operator.add, "prod": operator.mul, "min": _min, "max": _max}
assert tuple(OPS) == OP_NAMES


def resolve_op(op):
    """Return ``(name, function)`` for an op name or an associative callable."""
    if isinstance(op, str):
        try:
            return op, OPS[op]
        except KeyError:
            raise InvalidCall(
                f"unknown op {op!r}: use one of {', '.join(sorted(OPS))} or an associative callable"
            ) from None
    if callable(op):
        return describe_callable(op), op  # no addresses: ranks must agree on it
    raise InvalidCall(f"op must be a name or a callable, got {op!r}")


def _parent_slot(node: tuple):
    """The node whose sequence holds node's value, and its slot there."""
    parent = node[:-1]
    return parent, (node[-1] if not parent else node[-1] + 1)


_MISSING = object()


class _Skipped:
    """The value of a task skipped after its last retry (on_error="skip"): the
    combine leaves it out. A singleton that survives pickling."""

    def __reduce__(self):
        return "SKIPPED"

    def __repr__(self):
        return "SKIPPED"


SKIPPED = _Skipped()


def skip_aware(op):
    """``op`` that leaves SKIPPED values out (still a fixed, deterministic tree)."""
    def combine(a, b):
        if a is SKIPPED:
            return b
        if b is SKIPPED:
            return a
        return op(a, b)

    return combine


class CombineError(Exception):
    """``op`` failed on two blocks of the combine tree: names the first task of each."""

    def __init__(self, left_task: tuple, right_task: tuple, error: BaseException):
        self.left_task, self.right_task, self.error = left_task, right_task, error
        super().__init__(f"combining the results of task {left_task} and task {right_task} failed: "
                         f"{type(error).__name__}: {error}")

    def failure(self, rank: int) -> dict:
        """A TaskError's fields for this failure, on ``rank`` (where the two blocks met)."""
        return {
            "task_id": self.right_task,
            "payload_repr": f"(the reduction of task {self.left_task} with task {self.right_task})",
            "rank": rank,
            "host": socket.gethostname(),
            "remote_traceback": f"{self}\n" + "".join(traceback.format_exception(self.error)),
            "exc_type": type(self.error).__name__,
        }


def _first_task(node: tuple, slot: int) -> tuple:
    """The task whose result (or subtree) fills ``slot`` of ``node``'s sequence."""
    if not node:
        return (slot,)
    return node if slot == 0 else node + (slot - 1,)


def _combine(op, node, level, left_index, left, right):
    try:
        return op(left, right)
    except Exception as exc:
        width = 1 << level
        raise CombineError(_first_task(node, left_index * width), _first_task(node, (left_index + 1) * width),
                           exc) from exc


class PartialTree:
    """The blocks of the combine tree that one rank has completed.

    ``blocks`` maps ``(node, level, index)`` to a value; only maximal blocks
    are kept (siblings merge as soon as both exist). ``lengths`` holds the slot
    count of nodes whose length is known here and whose value is not yet
    complete.
    """

    def __init__(self, op, n_roots: int):
        self.op = op
        self.blocks: dict = {}
        self.lengths: dict = {(): n_roots}
        self.result = _MISSING

    def add_task(self, task_id: tuple, value, n_children: int) -> None:
        """Record a task's own result (called by the rank that ran it)."""
        if n_children == 0:
            node, slot = _parent_slot(task_id)
            self._add(node, 0, slot, value)
        else:
            self.lengths[task_id] = 1 + n_children
            self._add(task_id, 0, 0, value)

    def merge(self, lengths: dict, blocks: dict) -> None:
        """Absorb another rank's partial tree (lengths first: they settle edges)."""
        self.lengths.update(lengths)
        # Any insertion order gives the same values: each tree node is always
        # op(left, right) of the same two children.
        for (node, level, index), value in blocks.items():
            self._add(node, level, index, value)

    def _add(self, node, level, index, value) -> None:
        op, blocks, lengths = self.op, self.blocks, self.lengths
        length = lengths.get(node)
        while True:
            if length is not None and index == 0 and (1 << level) >= length:
                # The node is complete: its value fills a slot of its parent.
                if not node:
                    self.result = value
                    blocks[((), level, 0)] = value  # ships like any block
                    return
                del lengths[node]
                node, index = _parent_slot(node)
                level = 0
                length = lengths.get(node)
                continue
            if index & 1 == 0:
                if length is not None and ((index + 1) << level) >= length:
                    level, index = level + 1, index >> 1  # right sibling is empty
                    continue
                other = blocks.pop((node, level, index + 1), _MISSING)
                if other is _MISSING:
                    blocks[(node, level, index)] = value
                    return
                value = _combine(op, node, level, index, value, other)
            else:
                other = blocks.pop((node, level, index - 1), _MISSING)
                if other is _MISSING:
                    blocks[(node, level, index)] = value
                    return
                value = _combine(op, node, level, index - 1, other, value)
            level, index = level + 1, index >> 1

    def settle(self) -> None:
        """Re-examine stored blocks after lengths were learned (final merge)."""
        pending = self.blocks
        self.blocks = {}
        self.merge({}, pending)

    @property
    def complete(self) -> bool:
        return self.result is not _MISSING

    def shippable_lengths(self) -> dict:
        return {k: v for k, v in self.lengths.items() if k}


def merge_parts(op, n_roots: int, parts):
    """Merge partial trees given as ``(lengths, blocks)`` pairs (any order): the call's value.

    Raises if the parts do not complete the tree: a task's result is missing.
    """
    final = PartialTree(op, n_roots)
    blocks: dict = {}
    for lengths, part_blocks in parts:
        final.lengths.update(lengths)
        blocks.update(part_blocks)
    final.merge({}, blocks)
    if not final.complete:
        raise RuntimeError(
            f"internal error: reduction incomplete, {len(final.blocks)} blocks left "
            f"(first {sorted(final.blocks)[:3]})"
        )
    return final.result
