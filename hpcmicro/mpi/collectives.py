"""MPI collectives of a call: result delivery (arrays as raw buffers, not pickled), a quiet barrier."""

from __future__ import annotations

import pickle

from ..transport.base import Backoff

__all__ = ["deliver", "pack_for_all", "receive_packed", "send_packed", "wait_for_all"]


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


def deliver(comm, value, root):
    """Rank 0 holds ``value``; give it to every rank (``root=None``) or to ``root`` only.

    To every rank, ``value`` is pickled once on rank 0 (protocol 5) with its
    NumPy arrays' memory pulled out of band; the arrays then travel by
    ``Bcast`` of their raw bytes, never copied into a pickle (``_bcast_value``).
    If ``value`` cannot be pickled, every rank raises ``pickle.PicklingError``.
    """
    if root is None:
        return _bcast_value(comm, value)
    if root == 0:
        return value if comm.rank == 0 else None
    if comm.rank == 0:
        comm.send(value, dest=root, tag=_DELIVER_TAG)
        return None
    if comm.rank == root:
        return comm.recv(source=0, tag=_DELIVER_TAG)
    return None


_DELIVER_TAG = 77

# Delivery to every rank (``_bcast_value``). Out-of-band buffers under SMALL_BUFFER bytes travel
# with the pickle itself in one packed block, so many small arrays cost one Bcast, not one each;
# larger ones go by their own Bcast straight from the array's memory. Every Bcast is cut in
# pieces of at most CHUNK_BYTES (MPI counts are C ints: below 2 GiB a call), and up to
# BCASTS_IN_FLIGHT pieces are in flight at once (``Ibcast``). A packed block of at most
# INLINE_BLOCK bytes rides in the header itself: a small value costs one collective.
SMALL_BUFFER = 256 * 1024
CHUNK_BYTES = 1 << 30
INLINE_BLOCK = 64 * 1024
BCASTS_IN_FLIGHT = 8

# Why not ``mpi4py.util.pkl5``'s ``bcast``, which does the same pickling? It pickles on the root
# before anything is sent, so a value that cannot be pickled raises there and leaves every other
# rank waiting in its first Bcast; here the header carries the failure to every rank. It also
# sends the pickle and every out-of-band buffer by separate Bcasts (three collectives for a bare
# array, one per array of a list), where small buffers are packed here. For large arrays both
# move the same bytes the same way (docs/benchmarks.md, "Result delivery", measures both).


def _bcast_value(comm, value):
    """``value`` from rank 0 on every rank: rank 0 gets ``value`` itself, the others a copy.

    Every branch is taken on every rank from the header rank 0 broadcasts
    first, never from local data, so that no rank waits in a collective the
    others skip.
    """
    if comm.rank == 0:
        header, block, large = pack_for_all(value)
        comm.bcast(header, root=0)
        return send_packed(comm, value, header, block, large)
    return receive_packed(comm, comm.bcast(None, root=0))


def pack_for_all(value) -> tuple:
    """Rank 0: ``(header, block, large)`` of ``value`` for every rank (``_pack_value``).

    A value that cannot be pickled gives a header carrying the error, so
    that every rank raises it. The header is small: a caller may send it in a
    message of its own (the end of a call does) instead of the ``bcast``.
    """
    try:
        return _pack_value(value)
    except Exception as exc:  # noqa: BLE001  (any pickling failure: every rank must learn of it)
        return _failure_header(value, exc), None, []


def send_packed(comm, value, header, block, large):
    """Rank 0, once every rank has ``header``: the buffers it names (none when the value is small)."""
    if header[0] is not None:
        raise pickle.PicklingError(header[0])
    _bcast_buffers(comm, ([block] if header[3] is None else []) + large, header[4])
    return value


def receive_packed(comm, header):
    """The other ranks, given rank 0's ``header``: the value (a small one needs no collective at all)."""
    error, sizes, block_len, inline, chunk, small = header
    if error is not None:
        raise pickle.PicklingError(error)
    block = bytearray(block_len) if inline is None else inline
    large = [_empty(n) for n in sizes if n >= small]
    _bcast_buffers(comm, ([block] if inline is None else []) + large, chunk)
    return _unpack_value(sizes, block, large, small)


def _pack_value(value, small: int | None = None, inline_limit: int | None = None,
                chunk: int | None = None) -> tuple:
    """Rank 0's side: ``(header, block, large)``; raises whatever pickling raises.

    ``header`` is ``(None, sizes, block_len, inline_block, chunk, small)``:
    ``sizes`` the byte count of each out-of-band buffer in pickle order,
    ``block`` the pickle followed by every buffer under ``small`` bytes
    (``inline_block`` is that same block when it is at most ``inline_limit``
    bytes, else None), ``large`` the other buffers' raw memory, in order.
    The thresholds travel in the header so that every rank splits alike.
    """
    # Plain bytes and lists, no NumPy: most results of a small call are small, and the header is pickled.
    small = SMALL_BUFFER if small is None else small
    inline_limit = INLINE_BLOCK if inline_limit is None else inline_limit
    chunk = CHUNK_BYTES if chunk is None else chunk
    buffers: list = []
    data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]  # contiguous (C or Fortran) by numpy's choice: 1-D bytes
    sizes = [r.nbytes for r in raws]
    packed = [data] + [r for r in raws if r.nbytes < small]
    block = memoryview(data if len(packed) == 1 else b"".join(packed))
    large = [r for r in raws if r.nbytes >= small]
    inline = block.tobytes() if block.nbytes <= inline_limit else None
    return (None, sizes, block.nbytes, inline, chunk, small), block, large


def _unpack_value(sizes, block, large, small):
    """The other ranks' side: the value from the block (pickle + small buffers) and the large buffers.

    Small buffers are copied out of the block so that each array owns its
    memory, as after a plain unpickle; large ones are used as received.
    """
    view = memoryview(block).cast("B")
    skeleton_len = len(view) - sum(int(n) for n in sizes if n < small)
    pos, buffers, large_iter = skeleton_len, [], iter(large)
    for n in sizes:
        n = int(n)
        if n < small:
            buffers.append(bytearray(view[pos : pos + n]))
            pos += n
        else:
            buffers.append(next(large_iter))
    return pickle.loads(view[:skeleton_len], buffers=buffers)


def _empty(nbytes):
    """A receive buffer for one large out-of-band buffer: uninitialized (NumPy's ``empty``), since it
    is overwritten whole. Only values holding large arrays get here: unpickling them loads NumPy anyway."""
    import numpy as np

    return np.empty(int(nbytes), np.uint8)


def _failure_header(value, exc):
    message = f"the call's result ({type(value).__name__}) cannot be pickled to deliver to every rank: " \
              f"{type(exc).__name__}: {exc}"
    return (message, None, 0, None, 0, 0)


def _bcast_buffers(comm, buffers, chunk):
    """``Bcast`` 1-D byte buffers from rank 0, in pieces of at most ``chunk`` bytes.

    Up to BCASTS_IN_FLIGHT pieces are in flight at once (``Ibcast``): on
    oversubscribed ranks one blocking ``Bcast`` after another ran at 0.5-0.7
    times the speed (docs/benchmarks.md, "Result delivery").
    """
    mpi_byte = _mpi_byte()
    pending: list = []
    for buf in buffers:
        view = memoryview(buf).cast("B")
        for start in range(0, len(view), chunk):
            if len(pending) >= BCASTS_IN_FLIGHT:
                pending.pop(0).Wait()
            pending.append(comm.Ibcast([view[start : start + chunk], mpi_byte], root=0))
    for req in pending:
        req.Wait()


def _mpi_byte():
    from mpi4py import MPI

    return MPI.BYTE
