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

import numpy as np

from ..errors import InvalidCall

__all__ = ["resolve_op", "PartialTree", "combine_collectively", "deliver", "SKIPPED", "skip_aware"]


def _is_array(x) -> bool:
    return getattr(x, "ndim", 0) > 0 and hasattr(x, "__array_ufunc__")


def _min(a, b):
    return np.minimum(a, b) if _is_array(a) or _is_array(b) else min(a, b)


def _max(a, b):
    return np.maximum(a, b) if _is_array(a) or _is_array(b) else max(a, b)


OPS = {"sum": operator.add, "prod": operator.mul, "min": _min, "max": _max}


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
        return f"{getattr(op, '__module__', '?')}.{getattr(op, '__qualname__', repr(op))}", op
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
                value = op(value, other)
            else:
                other = blocks.pop((node, level, index - 1), _MISSING)
                if other is _MISSING:
                    blocks[(node, level, index)] = value
                    return
                value = op(other, value)
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


# --------------------------------------------------------------------------------------
# The final combine across ranks.


def combine_collectively(comm, tree: PartialTree | None, n_roots: int, op):
    """Gather every rank's partial tree to rank 0 and merge: the value on rank 0, None elsewhere.

    Arrays travel as raw bytes through ``Gatherv`` (no pickles); everything
    else is small and pickled.
    """
    lengths, scalars, arrays = {}, {}, []
    if tree is not None:
        lengths = tree.shippable_lengths()
        for key, value in tree.blocks.items():
            if _array_meta(value) is not None:
                arrays.append((key, value))
            else:
                scalars[key] = value
    meta = [(key, a.dtype.str, a.shape) for key, a in arrays]
    gathered = comm.gather((lengths, scalars, meta), root=0)
    payload = _pack([a for _, a in arrays])
    counts = comm.gather(payload.size, root=0)
    if comm.rank != 0:
        comm.Gatherv(payload, None, root=0)
        return None
    recvbuf = np.empty(sum(counts), np.uint8)
    displs = np.concatenate([[0], np.cumsum(counts[:-1])]).astype(np.int64)
    comm.Gatherv(payload, [recvbuf, counts, displs, _mpi_byte()], root=0)
    return _merge_gathered(op, n_roots, gathered, recvbuf, counts)


def _pack(arrays):
    """One contiguous byte buffer of all the arrays, for Gatherv.

    Device (CuPy) arrays stay on the device when the MPI library is GPU-aware,
    else they are staged through host memory; the bytes are the same.
    """
    from ..mpi.devices import gpu_aware_mpi, is_device_array

    if not arrays:
        return np.empty(0, np.uint8)
    on_device = [is_device_array(a) for a in arrays]
    if all(on_device) and gpu_aware_mpi():
        import cupy

        return cupy.concatenate([cupy.ascontiguousarray(a).reshape(-1).view(cupy.uint8) for a in arrays])
    host = [a.get() if dev else a for a, dev in zip(arrays, on_device)]
    return np.concatenate([np.ascontiguousarray(a).reshape(-1).view(np.uint8) for a in host])


def _merge_gathered(op, n_roots, gathered, recvbuf, counts):
    final = PartialTree(op, n_roots)
    all_blocks = {}
    offset = 0
    for (lengths, scalars, meta), count in zip(gathered, counts):
        final.lengths.update(lengths)
        all_blocks.update(scalars)
        pos = offset
        for key, dtype, shape in meta:
            dt = np.dtype(dtype)
            nbytes = dt.itemsize * int(np.prod(shape, dtype=np.int64))
            all_blocks[key] = recvbuf[pos : pos + nbytes].view(dt).reshape(shape).copy()
            pos += nbytes
        offset += count
    final.merge({}, all_blocks)
    if not final.complete:
        raise RuntimeError(
            f"internal error: reduction incomplete, {len(final.blocks)} blocks left "
            f"(first {sorted(final.blocks)[:3]})"
        )
    return final.result


def deliver(comm, value, root):
    """Rank 0 holds ``value``; give it to every rank (``root=None``) or to ``root`` only.

    NumPy arrays go by ``Bcast`` of their buffer, anything else pickled.
    """
    if root is None:
        kind = comm.bcast(_array_meta(value) if comm.rank == 0 else None, root=0)
        if kind is None:
            return comm.bcast(value, root=0)
        dtype, shape = kind
        buf = np.ascontiguousarray(value) if comm.rank == 0 else np.empty(shape, np.dtype(dtype))
        comm.Bcast(buf, root=0)
        return buf
    if root == 0:
        return value if comm.rank == 0 else None
    if comm.rank == 0:
        comm.send(value, dest=root, tag=_DELIVER_TAG)
        return None
    if comm.rank == root:
        return comm.recv(source=0, tag=_DELIVER_TAG)
    return None


_DELIVER_TAG = 77


def _array_meta(value):
    """(dtype, shape) of a NumPy or device array that can travel as raw bytes, else None."""
    if (isinstance(value, np.ndarray) and value.dtype != object) or hasattr(value, "__cuda_array_interface__"):
        return (value.dtype.str, tuple(value.shape))
    return None


def _mpi_byte():
    from mpi4py import MPI

    return MPI.BYTE
