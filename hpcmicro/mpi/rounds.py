"""The synchronization of a call: one round at its start, one at its end, neither spinning.

MPI's blocking collectives poll at full speed, so on an oversubscribed node a
rank that arrives early burns the core that the late rank needs. Every wait
here is a non-blocking operation completed under ``Backoff`` (yield, then
sleep).

- Start (``agree_on_call``): one ``Iallgather`` of a fixed-size record per rank:
  a digest of the call's signature, flags and the master's task count. Only
  when a rank has an error or a digest differs does a second, pickled round
  gather the details, so that every rank raises the same message.
- End: each worker sends its piece (statistics, its part of the reduction, its
  trace) to the master (``send_piece``); the master gathers them
  (``gather_pieces``), and answers every worker with one header, pickled once
  (``send_headers`` / ``receive_header``). Under ULFM a dead rank revokes the
  communicator, so these point-to-point waits fail like a collective would.
"""

from __future__ import annotations

import hashlib
import pickle
from array import array

from ..constants import MASTER
from ..transport.base import Backoff

__all__ = ["agree_on_call", "gather_pieces", "receive_header", "send_headers", "send_piece", "wait_quietly"]

# Tags of the end of a call; the protocol's tags (engine/events.py Tag) are small numbers.
PIECE_TAG = 901
HEADER_TAG = 902

_HAS_ERROR, _REPLAY, _NO_ROOTS = 1, 2, 4


def wait_quietly(request) -> None:
    """Complete one MPI request, yielding and sleeping instead of spinning."""
    backoff = Backoff()
    while not request.Test():
        backoff.sleep()


def agree_on_call(comm, signature, error, n_roots, replay):
    """The start of a call, one round: ``(n_roots, replay, seen)``.

    On the fast path (no rank has an error, every signature digest equals the
    master's) ``n_roots`` and ``replay`` are the master's and ``seen`` is None.
    Otherwise ``seen`` is every rank's ``(signature, error, n_roots, replay)``,
    gathered pickled, for the caller to raise the same error on every rank
    (or, if the signatures only pickle differently, go on with the master's
    values).
    """
    digest = hashlib.blake2b(pickle.dumps(signature, protocol=4), digest_size=16).digest()
    flags = (_HAS_ERROR if error is not None else 0) | (_REPLAY if replay else 0) | \
        (_NO_ROOTS if n_roots is None else 0)
    mine = array("q")  # int64 records (array, not numpy: a call on plain values need not load NumPy)
    mine.frombytes(digest)
    mine.extend((flags, n_roots or 0))
    everyone = array("q", bytes(8 * 4 * comm.size))
    wait_quietly(comm.Iallgather(mine, everyone))
    records = [everyone[4 * r : 4 * r + 4] for r in range(comm.size)]
    master = records[MASTER]
    if any(r[2] & _HAS_ERROR or r[:2] != master[:2] for r in records):
        # The slow path: the details, for the caller to raise the same error everywhere.
        return None, None, comm.allgather((signature, error, n_roots, replay))
    return (None if master[2] & _NO_ROOTS else int(master[3])), bool(master[2] & _REPLAY), None


def send_piece(comm, piece) -> None:
    """A worker's end of the call: its piece to the master (pickled, sent as bytes)."""
    blob = pickle.dumps(piece, protocol=pickle.HIGHEST_PROTOCOL)
    wait_quietly(comm.Isend([blob, _byte()], dest=MASTER, tag=PIECE_TAG))


def gather_pieces(comm) -> dict:
    """The master's end of the call: every worker's piece, by rank."""
    pieces: dict = {}
    while len(pieces) < comm.size - 1:
        source, piece = _receive(comm, _any_source(), PIECE_TAG)
        pieces[source] = piece
    return pieces


def send_headers(comm, header) -> None:
    """The master's answer to every worker: one pickle, sent to each."""
    blob = pickle.dumps(header, protocol=pickle.HIGHEST_PROTOCOL)
    requests = [comm.Isend([blob, _byte()], dest=rank, tag=HEADER_TAG) for rank in range(comm.size)
                if rank != MASTER]
    for request in requests:
        wait_quietly(request)


def receive_header(comm):
    return _receive(comm, MASTER, HEADER_TAG)[1]


def _receive(comm, source, tag):
    from mpi4py import MPI

    status = MPI.Status()
    backoff = Backoff()
    while True:
        msg = comm.Improbe(source, tag, status)
        if msg is not None:
            break
        backoff.sleep()
    buf = bytearray(status.Get_count(MPI.BYTE))
    msg.Recv([buf, MPI.BYTE])
    return status.Get_source(), pickle.loads(buf)


def _byte():
    from mpi4py import MPI

    return MPI.BYTE


def _any_source() -> int:
    from mpi4py import MPI

    return MPI.ANY_SOURCE
