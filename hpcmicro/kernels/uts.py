"""Unbalanced Tree Search (Olivier et al., LCPC 2006), SHA-1 variant.

Bit-compatible with the reference C code (``uts.c`` with ``rng/brg_sha1.c``),
so the published tree sizes double as correctness checks:

* ``rng_init(seed)``: SHA-1 of 20 bytes, 16 zeros then ``seed`` as a
  big-endian int32.
* ``rng_spawn(state, i)``: SHA-1 of the parent's 20-byte state followed by
  ``i`` as a big-endian int32.  The i-th child gets ``rng_spawn(parent, i)``.
* ``rng_rand(state)``: last 4 bytes of the state, big-endian, ``& 0x7fffffff``;
  ``toProb(r) = r / 2**31``.

Tree shapes (``uts_numChildren``), with MAXNUMCHILDREN = 100 capping every
node except a binomial root:

* geometric (``-t 1``): b_i from the shape function of the depth (``-a``:
  0 linear, 1 exp-decreasing, 2 cyclic, 3 fixed), then the number of children
  is ``floor(log(1 - u) / log(1 - p))`` with ``p = 1 / (1 + b_i)``;
* binomial (``-t 0``): the root has ``floor(b0)`` children, any other node
  ``m`` children with probability ``q``, else none;
* hybrid (``-t 2``): geometric above depth ``shift_depth * d``, binomial below.

A node is the tuple ``(state: bytes, height: int)``: small and picklable, so
it can travel between ranks as a task payload.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import NamedTuple

from ..engine.context import context as _context  # per node: an import statement in the kernel costs ~1 us

__all__ = [
    "BIN",
    "GEO",
    "HYBRID",
    "LINEAR",
    "EXPDEC",
    "CYCLIC",
    "FIXED",
    "UTSParams",
    "TreeStats",
    "PRESETS",
    "PUBLISHED_NODES",
    "T1",
    "T2",
    "T3",
    "T4",
    "T5",
    "DEFAULT",
    "SMALL_GEO",
    "SMALL_BIN",
    "root",
    "num_children",
    "children",
    "count_kernel",
    "serial_count",
    "serial_stats",
]

# Tree types (-t) and geometric shapes (-a), numbered as in the reference.
BIN, GEO, HYBRID = 0, 1, 2
LINEAR, EXPDEC, CYCLIC, FIXED = 0, 1, 2, 3

MAXNUMCHILDREN = 100
_POS_MASK = 0x7FFFFFFF
_TWO31 = 2147483648.0


@dataclass(frozen=True)
class UTSParams:
    """One tree; field defaults are the reference's command-line defaults.

    ``tree_type`` (-t), ``shape`` (-a), ``gen_mx`` (-d), ``b0`` (-b),
    ``root_seed`` (-r), ``q`` (-q), ``m`` (-m), ``shift_depth`` (-f).
    """

    tree_type: int = GEO
    shape: int = LINEAR
    gen_mx: int = 6
    b0: float = 4.0
    root_seed: int = 0
    q: float = 15.0 / 64.0
    m: int = 4
    shift_depth: float = 0.5


class TreeStats(NamedTuple):
    nodes: int
    leaves: int
    max_depth: int


# Published sizes from the reference's sample_trees.sh (nodes / leaves / depth).
DEFAULT = UTSParams()  # 1,732 / 1,050 / 6: the reference's default tree
T1 = UTSParams(tree_type=GEO, shape=FIXED, gen_mx=10, b0=4.0, root_seed=19)  # 4,130,071 / 3,305,118 / 10
T2 = UTSParams(tree_type=GEO, shape=CYCLIC, gen_mx=16, b0=6.0, root_seed=502)  # 4,117,769 / 2,342,762 / 81
T3 = UTSParams(tree_type=BIN, b0=2000.0, q=0.124875, m=8, root_seed=42)  # 4,112,897 / 3,599,034 / 1572
# T4: 4,132,453 / 3,108,986 / 134
T4 = UTSParams(tree_type=HYBRID, shape=LINEAR, gen_mx=16, b0=6.0, root_seed=1, q=0.234375, m=4)
T5 = UTSParams(tree_type=GEO, shape=LINEAR, gen_mx=20, b0=4.0, root_seed=34)  # 4,147,582 / 2,181,318 / 20
# Small trees for tests, well under a second serially (sizes measured here,
# nothing published): SMALL_GEO 3,987 / 3,232 / 5; SMALL_BIN 13,457 / 11,799 / 68.
SMALL_GEO = UTSParams(tree_type=GEO, shape=FIXED, gen_mx=5, b0=4.0, root_seed=19)
SMALL_BIN = UTSParams(tree_type=BIN, b0=200.0, q=0.12, m=8, root_seed=3)

PRESETS = {
    "DEFAULT": DEFAULT,
    "T1": T1,
    "T2": T2,
    "T3": T3,
    "T4": T4,
    "T5": T5,
    "SMALL_GEO": SMALL_GEO,
    "SMALL_BIN": SMALL_BIN,
}

# The node counts the reference publishes for its sample trees (sample_trees.sh), by preset name:
# an implementation that walks one of these trees must count exactly this many nodes.
PUBLISHED_NODES = {
    "T1": 4_130_071,
    "T2": 4_117_769,
    "T3": 4_112_897,
    "T4": 4_132_453,
    "T5": 4_147_582,
}

# Spawn-index suffixes, precomputed: a node has at most max(100, b0) children.
_INDEX_BYTES = [i.to_bytes(4, "big") for i in range(MAXNUMCHILDREN + 1)]


def _index_bytes(i: int) -> bytes:
    return _INDEX_BYTES[i] if i <= MAXNUMCHILDREN else i.to_bytes(4, "big")


def _rand(state: bytes) -> int:
    return int.from_bytes(state[16:20], "big") & _POS_MASK


def root(params: UTSParams) -> tuple:
    """The root node: ``(rng_init(root_seed), 0)``."""
    seed = params.root_seed & 0xFFFFFFFF  # C shifts an int: two's complement bytes
    return (hashlib.sha1(bytes(16) + seed.to_bytes(4, "big")).digest(), 0)


def _geo_b_i(params: UTSParams, depth: int) -> float:
    b0, gen_mx = params.b0, params.gen_mx
    if depth == 0:
        return b0
    if params.shape == EXPDEC:
        return b0 * math.pow(depth, -math.log(b0) / math.log(gen_mx))
    if params.shape == CYCLIC:
        if depth > 5 * gen_mx:
            return 0.0
        return math.pow(b0, math.sin(2.0 * 3.141592653589793 * depth / gen_mx))
    if params.shape == FIXED:
        return b0 if depth < gen_mx else 0.0
    return b0 * (1.0 - depth / gen_mx)  # LINEAR, and the reference's default


def _num_geo(params: UTSParams, state: bytes, depth: int) -> int:
    b_i = _geo_b_i(params, depth)
    if b_i <= 0.0:
        # C computes log(0) = -inf here and gets 0 children; Python's log raises.
        return 0
    p = 1.0 / (1.0 + b_i)
    u = _rand(state) / _TWO31
    return int(math.floor(math.log(1.0 - u) / math.log(1.0 - p)))


def _num_bin(params: UTSParams, state: bytes) -> int:
    return params.m if _rand(state) / _TWO31 < params.q else 0


def num_children(params: UTSParams, node: tuple) -> int:
    """How many children ``node`` has (the reference's ``uts_numChildren``)."""
    state, height = node
    t = params.tree_type
    if t == BIN:
        n = int(math.floor(params.b0)) if height == 0 else _num_bin(params, state)
    elif t == GEO:
        n = _num_geo(params, state, height)
    elif t == HYBRID:
        if height < params.shift_depth * params.gen_mx:
            n = _num_geo(params, state, height)
        else:
            n = _num_bin(params, state)
    else:
        raise ValueError(f"unknown UTS tree type {t!r}")
    if height == 0 and t == BIN:
        return min(n, int(math.ceil(params.b0)))  # only a binomial root may exceed 100
    return min(n, MAXNUMCHILDREN)


def children(params: UTSParams, node: tuple) -> list:
    """The child nodes of ``node``, in spawn order; pure, needs no runtime."""
    n = num_children(params, node)
    if n <= 0:
        return []
    state, height = node
    h = hashlib.sha1(state)
    out = []
    for i in range(n):
        c = h.copy()  # reuse the parent's hashed prefix: cheaper than rehashing it
        c.update(_index_bytes(i))
        out.append((c.digest(), height + 1))
    return out


def count_kernel(params: UTSParams, node: tuple) -> int:
    """Spawn every child of ``node`` and return 1; summed over the tree: node count.

    Use as ``functools.partial(uts.count_kernel, params)`` on ``root(params)``.
    """
    kids = children(params, node)
    if kids:
        _context().spawn_many(kids)
    return 1


def serial_stats(params: UTSParams) -> TreeStats:
    """Walk the whole tree with an explicit-stack DFS; the independent reference."""
    nodes = leaves = max_depth = 0
    stack = [root(params)]
    pop, extend = stack.pop, stack.extend
    while stack:
        node = pop()
        nodes += 1
        if node[1] > max_depth:
            max_depth = node[1]
        kids = children(params, node)
        if kids:
            extend(kids)
        else:
            leaves += 1
    return TreeStats(nodes, leaves, max_depth)


def serial_count(params: UTSParams) -> int:
    """Number of nodes in the tree, computed serially."""
    return serial_stats(params).nodes
