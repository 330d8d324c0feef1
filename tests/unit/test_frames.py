"""Frames and the local fold give bitwise the combine tree of PartialTree, in any order and with any splits."""

import random

import pytest

from hpcmicro.engine.combine import CombineError, PartialTree
from hpcmicro.engine.frames import Frame, LocalFold, ghost_frame, root_frame
from tests.unit.engine_harness import random_spawn_tree


def shape(a, b):
    """Non-associative and non-commutative: the string is the tree's shape."""
    return f"({a} {b})"


def random_tree(rng, n_roots, max_depth, fanout=4):
    """{task_id: number of children}, task ids as paths; roots at depth 1."""
    return random_spawn_tree(rng, n_roots, max_children=fanout, max_depth=max_depth - 1)


def reference(kids, n_roots):
    """PartialTree fed task by task in pre-order: the fold every schedule must equal."""
    tree = PartialTree(shape, n_roots)
    for tid in sorted(kids):
        tree.add_task(tid, "t" + ".".join(map(str, tid)), kids[tid])
    assert tree.complete
    return tree.result


def run_local(kids, n_roots, rng, order="dfs", split_p=0.0):
    """Run the tree through frames: depth-first, or picking ready tasks at random (priorities)."""
    tree = PartialTree(shape, n_roots)
    fold = LocalFold(tree)
    root = root_frame()
    ready = [(root, i) for i in reversed(range(n_roots))]
    live: list[Frame] = []
    while ready:
        at = len(ready) - 1 if order == "dfs" else rng.randrange(len(ready))
        parent, j = ready.pop(at)
        tid = parent.child_path(j)
        value = "t" + ".".join(map(str, tid))
        k = kids[tid]
        if k:
            frame = Frame(parent, j, 1 + k, value)
            live.append(frame)
            ready.extend((frame, c) for c in reversed(range(k)))
        else:
            fold.complete(parent, j, value)
        live = [f for f in live if f.acc is not None]  # still open (not complete, not split)
        if live and rng.random() < split_p:  # a steal or a snapshot: this frame cannot finish here
            fold.split(rng.choice(live))
    assert tree.complete
    return tree.result


@pytest.mark.parametrize("seed", range(30))
def test_depth_first_fold_equals_the_combine_tree(seed):
    rng = random.Random(seed)
    n_roots = rng.randint(1, 9)
    kids = random_tree(rng, n_roots, max_depth=rng.randint(1, 6))
    assert run_local(kids, n_roots, rng) == reference(kids, n_roots)


@pytest.mark.parametrize("seed", range(30))
def test_random_order_and_splits_give_the_same_value(seed):
    rng = random.Random(1000 + seed)
    n_roots = rng.randint(1, 6)
    kids = random_tree(rng, n_roots, max_depth=5)
    expected = reference(kids, n_roots)
    assert run_local(kids, n_roots, rng, order="random") == expected
    assert run_local(kids, n_roots, rng, split_p=0.3) == expected
    assert run_local(kids, n_roots, rng, order="random", split_p=0.3) == expected


def test_a_chain_a_thousand_deep_needs_no_ids():
    n = 1000
    kids = {}
    tid = (0,)
    for _ in range(n):
        kids[tid] = 1
        tid = tid + (0,)
    kids[tid] = 0
    tree = PartialTree(lambda a, b: a + b, 1)
    fold = LocalFold(tree)
    parent, j = root_frame(), 0
    frames = []
    for _ in range(n):
        frame = Frame(parent, j, 2, 1)
        frames.append(frame)
        parent, j = frame, 0
    fold.complete(parent, 0, 1)
    assert tree.result == n + 1
    assert all(f._path is None for f in frames)  # no id was ever built


def test_paths_are_built_once_from_the_nearest_known_ancestor():
    ghost = ghost_frame((3, 1))  # stolen tasks below task (3, 1)
    a = Frame(ghost, 2, 3, None)
    b = Frame(a, 0, 2, None)
    assert b.child_path(1) == (3, 1, 2, 0, 1)
    assert a._path == (3, 1, 2)  # cached on the way
    assert root_frame().child_path(7) == (7,)


def test_an_op_failing_in_the_local_fold_names_both_tasks():
    def refuse(a, b):
        if b == "bad":
            raise ValueError("no")
        return a + b

    tree = PartialTree(refuse, 1)
    fold = LocalFold(tree)
    frame = Frame(root_frame(), 0, 3, "x")
    fold.complete(frame, 0, "y")
    with pytest.raises(CombineError) as info:
        fold.complete(frame, 1, "bad")
    # slots 0-1 (tasks (0,) and (0, 0)) meet slot 2 (task (0, 1)) in the final fold
    assert info.value.left_task == (0,) and info.value.right_task == (0, 1)
