"""Pairwise gravitational forces, one (i block, j block) tile per task.

``n`` particles, generated from ``seed`` (``particles``): position uniform in
the unit cube, mass uniform in [0.5, 1.5), each a uniform53 double from
Philox (``montecarlo.philox4x32``, counter ``(p, 0, word, TAG_NBODY)``, key
``(seed, 0)``), so every rank builds any block on any device, bit for bit.

The force on particle i, with softening ``eps``::

    F_i = G m_i  sum_j  m_j (r_j - r_i) / (|r_j - r_i|**2 + eps**2) ** 1.5

(the j = i term is 0).  Task payload ``(i_block, j_block)``: the result is an
``(n, 3)`` float64 array of the worker's ``xp`` holding the forces on block
i's particles from block j's ones in block i's rows and zeros elsewhere, so
``map_reduce(force_block, tasks(params), op="sum")`` is the total force
array, and deterministic (its combine order is fixed by task ids).

Each tile is computed from element-wise ``+ - * / sqrt`` (correctly rounded
on numpy and cupy alike) and ``montecarlo.tree_sum`` over j, so a tile is
bit-identical on CPU and GPU and inside or outside a batch.  Against the
direct O(N^2) reference (``direct_forces``, a different summation order):
``|F - ref| <= 1e-12 * S`` per component, ``S`` the same sum with every term
taken in absolute value.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy

from .batched import Batched, current_xp
from .montecarlo import MASK32, TAG_NBODY, philox4x32, tree_sum, uniform53

__all__ = [
    "NBodyParams",
    "particles",
    "force_block",
    "force_block_batch",
    "force_kernel",
    "tasks",
    "direct_forces",
]


@dataclass(frozen=True)
class NBodyParams:
    n: int = 1024
    block: int = 128
    seed: int = 0
    softening: float = 1e-2
    G: float = 1.0

    def __post_init__(self):
        if self.n <= 0 or self.block <= 0 or self.softening <= 0:
            raise ValueError("need n > 0, block > 0 and softening > 0")
        if not 0 <= self.seed <= MASK32 or self.n > MASK32:
            raise ValueError("seed and n must be < 2**32")

    @property
    def n_blocks(self) -> int:
        return -(-self.n // self.block)


def particles(params: NBodyParams, rows: range, xp=numpy):
    """Positions ``(len(rows), 3)`` and masses ``(len(rows),)`` of particles ``rows``."""
    p = xp.arange(rows.start, rows.stop, dtype=xp.uint64)
    w = philox4x32((p, 0, 0, TAG_NBODY), (params.seed, 0), xp)
    v = philox4x32((p, 0, 1, TAG_NBODY), (params.seed, 0), xp)
    pos = xp.stack([uniform53(w[0], w[1], xp), uniform53(w[2], w[3], xp), uniform53(v[0], v[1], xp)], axis=-1)
    return pos, 0.5 + uniform53(v[2], v[3], xp)


def _rows(params: NBodyParams, b: int) -> range:
    if not 0 <= b < params.n_blocks:
        raise ValueError(f"block {b} outside 0..{params.n_blocks - 1}")
    return range(b * params.block, min(params.n, (b + 1) * params.block))


def _tiles(params: NBodyParams, pairs, xp):
    """Forces ``(len(pairs), bi, 3)`` for block pairs whose blocks all have the same sizes."""
    pi, mi = zip(*(particles(params, _rows(params, i), xp) for i, _ in pairs))
    pj, mj = zip(*(particles(params, _rows(params, j), xp) for _, j in pairs))
    pi, mi, pj, mj = xp.stack(pi), xp.stack(mi), xp.stack(pj), xp.stack(mj)  # (B, b, 3), (B, b)
    d = [pj[:, None, :, c] - pi[:, :, None, c] for c in range(3)]  # each (B, bi, bj)
    r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2] + params.softening * params.softening
    w = mj[:, None, :] / (r2 * xp.sqrt(r2))
    f = xp.stack([tree_sum(w * dc, xp) for dc in d], axis=-1)  # (B, bi, 3)
    return (params.G * mi)[:, :, None] * f


def _batch_impl(params: NBodyParams, payloads, xp) -> list:
    payloads = [(int(i), int(j)) for i, j in payloads]
    groups: dict = {}  # equal tile shapes stack into one computation
    for k, (i, j) in enumerate(payloads):
        groups.setdefault((len(_rows(params, i)), len(_rows(params, j))), []).append(k)
    out = [None] * len(payloads)
    for ks in groups.values():
        tiles = _tiles(params, [payloads[k] for k in ks], xp)
        for t, k in enumerate(ks):
            rows = _rows(params, payloads[k][0])
            full = xp.zeros((params.n, 3), dtype=xp.float64)
            full[rows.start : rows.stop] = tiles[t]
            out[k] = full
    return out


def _impl(params: NBodyParams, payload, xp):
    return _batch_impl(params, [payload], xp)[0]


def force_block(params: NBodyParams, payload):
    """Forces on block ``i`` from block ``j``, ``payload = (i, j)``, as a full (n, 3) array."""
    return _impl(params, payload, current_xp())


def force_block_batch(params: NBodyParams, payloads) -> list:
    """``[force_block(params, p) for p in payloads]``, bit for bit, in one pass per tile shape."""
    return _batch_impl(params, payloads, current_xp())


force_block.batch = force_block_batch  # type: ignore[attr-defined]  # the batched form (kernels/batched.py)


def force_kernel(params: NBodyParams) -> Batched:
    """``force_block`` bound to ``params``, with its batched form."""
    # About fifteen live 8-byte arrays of (batch, block, block), plus an (n, 3) result per payload.
    max_batch = max(1, (1 << 23) // (params.block * params.block + 3 * params.n))
    return Batched(functools.partial(force_block, params), functools.partial(force_block_batch, params),
                   max_batch=max_batch)


def tasks(params: NBodyParams) -> list[tuple[int, int]]:
    """Every tile ``(i, j)``, row-major."""
    nb = params.n_blocks
    return [(i, j) for i in range(nb) for j in range(nb)]


def direct_forces(params: NBodyParams, absolute: bool = False) -> numpy.ndarray:
    """The O(N^2) numpy reference, all pairs at once (``absolute``: the error scale S)."""
    pos, m = particles(params, range(params.n))
    d = pos[None, :, :] - pos[:, None, :]  # d[i, j] = r_j - r_i
    r2 = (d * d).sum(axis=-1) + params.softening**2
    terms = (m[None, :] / r2**1.5)[:, :, None] * d
    if absolute:
        terms = numpy.abs(terms)
    return params.G * m[:, None] * terms.sum(axis=1)
