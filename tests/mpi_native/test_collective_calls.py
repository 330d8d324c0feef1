"""The same calls from inside pytest-mpi sessions (every rank runs these tests)."""

import pytest

import hpcmicro as hm
from hpcmicro.kernels import synthetic


def cube(x):
    return x ** 3


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("policy", ["steal", "static"])
def test_map_reduce_matches_serial(policy):
    with hm.Runtime(policy=policy) as rt:
        assert rt.map_reduce(cube, list(range(300))) == sum(x ** 3 for x in range(300))
        assert rt.map(len, hm.Range(50, 7)) == [7] * 7 + [1]


@pytest.mark.mpi(min_size=2)
def test_float_reduction_same_on_every_rank():
    from mpi4py import MPI

    with hm.Runtime() as rt:
        value = rt.map_reduce(synthetic.order_sensitive_value, list(range(2000)))
    everyone = MPI.COMM_WORLD.allgather(value.hex())
    assert len(set(everyone)) == 1
