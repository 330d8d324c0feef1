"""Delivery to every rank without MPI: the packing helpers, and the whole exchange over a recorded fake comm."""

import pickle
import threading

import numpy as np
import pytest

from hpcmicro.mpi import collectives as c


class RootComm:
    """Rank 0: records every collective it takes part in, in order."""

    rank = 0

    def __init__(self):
        self.log = []

    def bcast(self, obj, root=0):
        self.log.append(("bcast", pickle.dumps(obj)))
        return obj

    def Ibcast(self, msg, root=0):
        self.log.append(("Bcast", bytes(msg[0])))
        return Done()


class OtherComm:
    """Another rank: replays rank 0's log, checking that it takes the same collectives with the same sizes."""

    rank = 1

    def __init__(self, log):
        self.log = list(log)

    def bcast(self, obj, root=0):
        kind, data = self.log.pop(0)
        assert kind == "bcast"
        return pickle.loads(data)

    def Ibcast(self, msg, root=0):
        kind, data = self.log.pop(0)
        view = msg[0]
        assert kind == "Bcast" and len(view) == len(data)
        view[:] = data
        return Done()


class Done:
    def Wait(self):
        pass


@pytest.fixture(autouse=True)
def no_mpi(monkeypatch):
    monkeypatch.setattr(c, "_mpi_byte", lambda: None)


def deliver_both(value, **limits):
    """``value`` through ``_bcast_value`` on rank 0 and on another rank: (rank 0's result, the other's, log)."""
    root = RootComm()
    for name, v in limits.items():
        setattr(c, name, v)
    mine = c._bcast_value(root, value)
    other = OtherComm(root.log)
    theirs = c._bcast_value(other, None)
    assert not other.log, "the other rank took fewer collectives than rank 0"
    return mine, theirs, root.log


def values():
    rng = np.random.default_rng(3)
    ro = np.arange(5)
    ro.flags.writeable = False
    return [rng.random(100_000), np.asfortranarray(rng.random((30, 20))), rng.random(50)[::3], np.array(1.5),
            np.empty((0, 2)), np.array([1, None], dtype=object), np.zeros(3, [("a", "i2"), ("b", "c16")]),
            ro, {"nest": (rng.integers(0, 5, 4, dtype=np.int8), "s")}, None, 3, "x"]


def assert_same(got, want):
    assert type(got) is type(want)
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
        assert got.flags.writeable == want.flags.writeable
    elif isinstance(want, dict):
        assert got.keys() == want.keys()
        for k in want:
            assert_same(got[k], want[k])
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
    else:
        assert got == want


@pytest.fixture
def limits():
    saved = c.SMALL_BUFFER, c.CHUNK_BYTES, c.INLINE_BLOCK
    yield
    c.SMALL_BUFFER, c.CHUNK_BYTES, c.INLINE_BLOCK = saved


@pytest.mark.parametrize("setting", [{}, {"SMALL_BUFFER": 64, "CHUNK_BYTES": 1000, "INLINE_BLOCK": 0},
                                     {"SMALL_BUFFER": 1 << 30, "INLINE_BLOCK": 1 << 30}])
def test_values_arrive_equal(limits, setting):
    value = values()
    mine, theirs, _ = deliver_both(value, **setting)
    assert mine is value
    assert_same(theirs, values())


def test_arrays_go_out_of_band_and_small_ones_packed(limits):
    value = [np.ones(100_000), np.ones(10), np.ones(20)]  # 800 KB alone; 80 and 160 bytes with the pickle
    _, theirs, log = deliver_both(value)
    assert [kind for kind, _ in log] == ["bcast", "Bcast"]  # the header carries the packed block
    assert len(log[1][1]) == 800_000
    assert all(a.flags.writeable for a in theirs)
    assert all(not np.shares_memory(theirs[1], a) for a in (theirs[0], theirs[2]))  # each owns its memory


def test_pieces_stay_under_the_chunk_size(limits):
    _, theirs, log = deliver_both([np.arange(10_000.0)], CHUNK_BYTES=3000, SMALL_BUFFER=1024)
    pieces = [len(data) for kind, data in log if kind == "Bcast"]
    assert max(pieces) <= 3000 and sum(pieces) == 80_000
    assert np.array_equal(theirs[0], np.arange(10_000.0))


def test_the_header_decides_the_split_on_every_rank(limits):
    root = RootComm()
    c.SMALL_BUFFER = 10
    c._bcast_value(root, [np.ones(100), np.ones(1)])
    c.SMALL_BUFFER = 1 << 20  # a rank with another setting still follows rank 0's header
    theirs = c._bcast_value(OtherComm(root.log), None)
    assert np.array_equal(theirs[0], np.ones(100)) and np.array_equal(theirs[1], np.ones(1))


def test_pack_and_unpack_alone():
    value = values()
    header, block, large = c._pack_value(value, small=1000, inline_limit=0, chunk=1 << 20)
    error, sizes, block_len, inline, chunk, small = header
    assert error is None and inline is None and block_len == block.nbytes and small == 1000
    assert [int(n) for n in sizes if n >= small] == [r.nbytes for r in large]
    received = [np.frombuffer(bytes(r), np.uint8).copy() for r in large]
    assert_same(c._unpack_value(sizes, np.frombuffer(bytes(block), np.uint8), received, small), values())


def test_an_unpicklable_value_raises_on_every_rank():
    root = RootComm()
    with pytest.raises(pickle.PicklingError, match="cannot be pickled.*lock"):
        c._bcast_value(root, [threading.Lock()])
    assert [kind for kind, _ in root.log] == ["bcast"]
    with pytest.raises(pickle.PicklingError, match="cannot be pickled.*lock"):
        c._bcast_value(OtherComm(root.log), None)
