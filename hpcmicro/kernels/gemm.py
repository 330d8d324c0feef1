"""Blocked dense matrix multiply ``C = A @ B`` with generated operands.

``A`` (m x k) and ``B`` (k x n) are never shipped: entry ``(r, c)`` is
``2u - 1``, ``u`` a uniform53 double from Philox (``montecarlo.philox4x32``)
with counter ``(r, c // 2, which, TAG_GEMM)`` and key ``(seed, 0)``, ``which``
0 for A and 1 for B^T (an even ``c`` takes output words 0-1, an odd one words
2-3).  Any rank builds exactly the rows of A and columns of B a block needs,
bit-identical on numpy and cupy.

Task payload: ``(i_block, j_block)``, ints, or a tuple of two slices (the
payload of ``blocks(params)``, an ``hm.Blocks`` over C).  The kernel returns
that block of C, float64, an array of the worker's ``xp``.  ``tasks(params)``
lists the int payloads in C order, ``assemble`` puts the blocks together.

Accuracy: the block product is one BLAS call (numpy: the CPU BLAS; cupy:
cuBLAS) whose summation order is its own; every entry obeys
``|C - A@B| <= 1e-12 * (|A| @ |B|)`` (the classical bound is about
``k * 2**-53``, so this holds for k up to a few thousand).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy

from .batched import current_xp, to_host
from .montecarlo import MASK32, TAG_GEMM, philox4x32, uniform53

__all__ = ["GemmParams", "operand_rows", "matrices", "gemm_block", "tasks", "blocks", "assemble"]


@dataclass(frozen=True)
class GemmParams:
    m: int = 512
    n: int = 512
    k: int = 512
    block_m: int = 128
    block_n: int = 128
    seed: int = 0

    def __post_init__(self):
        if min(self.m, self.n, self.k, self.block_m, self.block_n) <= 0:
            raise ValueError("matrix sizes and blocks must be > 0")
        if not 0 <= self.seed <= MASK32 or max(self.m, self.n) > MASK32:
            raise ValueError("seed and row counts must be < 2**32")

    @property
    def grid(self) -> tuple[int, int]:
        return -(-self.m // self.block_m), -(-self.n // self.block_n)


def operand_rows(params: GemmParams, which: int, rows: range, xp=numpy):
    """Rows ``rows`` of A (``which=0``) or of B^T (``which=1``): shape (len(rows), k)."""
    k = params.k
    r = xp.arange(rows.start, rows.stop, dtype=xp.uint64)[:, None]
    q = xp.arange((k + 1) // 2, dtype=xp.uint64)[None, :]
    w0, w1, w2, w3 = philox4x32((r, q, which, TAG_GEMM), (params.seed, 0), xp)
    u = xp.stack([uniform53(w0, w1, xp), uniform53(w2, w3, xp)], axis=-1)  # (rows, q, 2)
    return (2.0 * u - 1.0).reshape(len(rows), -1)[:, :k]


def matrices(params: GemmParams, xp=numpy):
    """The whole A and B (the test reference builds ``A @ B`` from these)."""
    return operand_rows(params, 0, range(params.m), xp), operand_rows(params, 1, range(params.n), xp).T


def _slices(params: GemmParams, payload) -> tuple[range, range]:
    a, b = payload
    if isinstance(a, slice):
        return range(*a.indices(params.m)), range(*b.indices(params.n))
    gi, gj = params.grid
    if not (0 <= a < gi and 0 <= b < gj):
        raise ValueError(f"block {payload!r} outside the {gi} x {gj} grid")
    return (range(a * params.block_m, min(params.m, (a + 1) * params.block_m)),
            range(b * params.block_n, min(params.n, (b + 1) * params.block_n)))


def _impl(params: GemmParams, payload, xp):
    rows, cols = _slices(params, payload)
    if rows.step != 1 or cols.step != 1:
        raise ValueError("gemm blocks must be contiguous slices")
    a = operand_rows(params, 0, rows, xp)
    bt = operand_rows(params, 1, cols, xp)
    return a @ bt.T


def gemm_block(params: GemmParams, payload):
    """The block of ``C = A @ B`` named by ``payload`` (see the module doc)."""
    return _impl(params, payload, current_xp())


def tasks(params: GemmParams) -> list[tuple[int, int]]:
    """Every block ``(i, j)`` of C, in C (row-major) order."""
    gi, gj = params.grid
    return [(i, j) for i in range(gi) for j in range(gj)]


def blocks(params: GemmParams):
    """The same blocks as an ``hm.Blocks`` over C (payloads are slice pairs)."""
    from hpcmicro.engine.tasks import Blocks

    return Blocks((params.m, params.n), (params.block_m, params.block_n))


def assemble(params: GemmParams, results, payloads=None) -> numpy.ndarray:
    """C (numpy) from the block results of ``map`` over ``payloads`` (default ``tasks(params)``)."""
    if payloads is None:
        payloads = tasks(params)
    c = numpy.empty((params.m, params.n))
    for payload, block in zip(payloads, results, strict=True):
        rows, cols = _slices(params, payload)
        c[rows.start : rows.stop, cols.start : cols.stop] = to_host(block)
    return c

