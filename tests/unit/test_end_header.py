"""The end-of-call header carries a result only when it is small: the capped size check agrees with pickle."""

import pickle
import threading

import numpy as np
import pytest

from hpcmicro.driver import spmd


def full_size(value) -> int:
    buffers: list = []
    data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    return len(data) + sum(b.raw().nbytes for b in buffers)


@pytest.mark.parametrize("value", [
    None, 3.5, list(range(10)), list(range(20_000)), "x" * 70_000, {"a": np.arange(5)},
    np.zeros(8191), np.zeros(8193), np.zeros((100, 100))[::2], [np.ones(1000)] * 50, [np.ones(1000) for _ in range(50)],
])
def test_small_agrees_with_the_pickled_size(value):
    assert spmd._small(value) == (full_size(value) <= spmd.INLINE_RESULT_BYTES)


def test_an_unpicklable_result_is_left_to_deliver():
    assert spmd._small([threading.Lock()]) is False
