"""MPI collectives of a call: the final combine of partial trees, result delivery, a quiet barrier.

Arrays travel as raw bytes (``Gatherv``, ``Bcast``: no pickles); everything
else is small and pickled.
"""

from __future__ import annotations

import numpy as np

from ..engine.combine import PartialTree, merge_parts
from ..transport.base import Backoff

__all__ = ["combine_collectively", "deliver", "wait_for_all"]


def wait_for_all(comm) -> None:
    """Wait until every rank has arrived, sleeping rather than spinning.

    MPI's blocking collectives poll at full speed; a rank that arrives early
    (a worker waiting for the master to prepare) would burn a core.
    """
    if comm.size == 1:
        return
    req = comm.Ibarrier()
    backoff = Backoff()
    while not req.Test():
        backoff.sleep()


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
    parts, offset = [], 0
    for (lengths, scalars, meta), count in zip(gathered, counts):
        blocks = dict(scalars)
        pos = offset
        for key, dtype, shape in meta:
            dt = np.dtype(dtype)
            nbytes = dt.itemsize * int(np.prod(shape, dtype=np.int64))
            blocks[key] = recvbuf[pos : pos + nbytes].view(dt).reshape(shape).copy()
            pos += nbytes
        offset += count
        parts.append((lengths, blocks))
    return merge_parts(op, n_roots, parts)


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
