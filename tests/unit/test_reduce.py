"""The combine tree: any split of the work among ranks, in any order, gives the
same bits; and the tree is the fixed dyadic tree over the task-id order."""

import operator
import random

import numpy as np
import pytest

from hpcmicro.kernels.synthetic import order_sensitive_value
from hpcmicro.engine.combine import PartialTree, resolve_op
from hpcmicro.errors import InvalidCall
from tests.unit.engine_harness import random_spawn_tree


def dyadic(values, op):
    """Independent reference: the pairwise tree over a list, written recursively."""
    def block(lo, size):
        if size == 1:
            return values[lo]
        half = size // 2
        if lo + half >= len(values):
            return block(lo, half)
        return op(block(lo, half), block(lo + half, half))

    size = 1
    while size < len(values):
        size *= 2
    return block(0, size)


def reference(children, values, op, n_roots):
    def node_value(tid):
        seq = [values[tid]] + [node_value(tid + (c,)) for c in range(children[tid])]
        return dyadic(seq, op)

    return dyadic([node_value((i,)) for i in range(n_roots)], op)


def split_and_merge(children, values, op, n_roots, n_ranks, rng):
    # Each rank runs a parent before its children only if it ran both; order otherwise random.
    trees = [PartialTree(op, n_roots) for _ in range(n_ranks)]
    for tid in sorted(children, key=lambda t: (len(t), rng.random())):
        trees[rng.randrange(n_ranks)].add_task(tid, values[tid], children[tid])
    final = PartialTree(op, n_roots)
    for t in trees:
        final.lengths.update(t.shippable_lengths())
    blocks = [item for t in trees for item in t.blocks.items()]
    rng.shuffle(blocks)
    final.merge({}, dict(blocks))
    assert final.complete
    return final.result


@pytest.mark.parametrize("seed", range(8))
def test_float_sum_is_bitwise_independent_of_the_split(seed):
    rng = random.Random(seed)
    n_roots = rng.randint(1, 40)
    children = random_spawn_tree(rng, n_roots)
    values = {tid: order_sensitive_value(i) for i, tid in enumerate(sorted(children))}
    expected = reference(children, values, operator.add, n_roots)
    for n_ranks in (1, 2, 3, 7):
        got = split_and_merge(children, values, operator.add, n_roots, n_ranks, rng)
        assert got.hex() == expected.hex()


def test_workload_is_really_order_sensitive():
    vals = [order_sensitive_value(i) for i in range(1000)]
    assert sum(vals) != sum(reversed(vals))


@pytest.mark.parametrize("seed", range(4))
def test_noncommutative_op_equals_left_fold_in_id_order(seed):
    rng = random.Random(seed)
    children = random_spawn_tree(rng, 17)
    values = {tid: ".".join(map(str, tid)) + ";" for tid in children}
    got = split_and_merge(children, values, operator.add, 17, 4, rng)
    assert got == "".join(values[t] for t in sorted(children))


def test_array_reduction_matches_numpy():
    rng = random.Random(3)
    children = {(i,): 0 for i in range(50)}
    values = {(i,): np.arange(4.0) * i for i in range(50)}
    got = split_and_merge(children, values, operator.add, 50, 3, rng)
    np.testing.assert_array_equal(got, np.arange(4.0) * sum(range(50)))
    _, mn = resolve_op("min")
    got = split_and_merge(children, {k: v - 7 for k, v in values.items()}, mn, 50, 3, rng)
    np.testing.assert_array_equal(got, np.minimum.reduce([v - 7 for v in values.values()]))


def test_resolve_op_names_the_choices():
    with pytest.raises(InvalidCall, match="unknown op 'mean'.*max, min, prod, sum"):
        resolve_op("mean")
