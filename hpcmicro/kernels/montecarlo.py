"""Monte Carlo with a counter-based random stream: the same numbers on CPU and GPU.

The generator is Philox4x32-10 (Salmon et al., SC'11), written once in
``xp`` integer arithmetic on uint64 arrays that hold 32-bit words, so numpy
and cupy produce bit-identical words (checked against the Random123
known-answer vectors in the tests).  Random number ``j`` of stream
``(task, seed)`` is ``philox(counter=(j mod 2**32, j >> 32, word, tag),
key=(task, seed))``: any rank, any device, any batch recomputes it alone.
``tag`` separates the kernels (pi, integrate, and the gemm and nbody
generators) so one seed never feeds two of them the same numbers.

Uniform doubles take 53 bits from two words, ``((a >> 5) * 2**26 + (b >> 6))
* 2**-53`` in [0, 1): exact integer-to-float steps, so they are
bit-identical too.

Kernels (payload = a task index ``i``, or a ``range`` of them, the payload of
``hm.Range``; task ``i`` draws ``params.samples`` points from stream
``(i, params.seed)``):

* ``pi_hits(params, i)``: how many points ``(x, y)``, 31-bit integers, fall
  in the quarter disc ``x*x + y*y < 2**62``.  Integer arithmetic only: the
  count is exact and equal on every device.  ``4 * hits / samples`` -> pi
  (the integer lattice biases it by about 1e-9, far below the noise).
* ``integrate(params, i)``: ``[sum f, sum f**2]`` (float64 numpy array, so
  ``map_reduce(op="sum")`` adds them) over uniform points of the box
  ``lower..upper`` for ``f = INTEGRANDS[params.func]``; ``estimate`` turns
  the total into the integral and its standard error.

Sums of floats use ``tree_sum``: fixed pairwise halving made of element-wise
additions only, so a task's sum does not depend on the batch around it and is
the same on numpy and cupy whenever ``f`` is (``+ - * / sqrt`` are correctly
rounded on both; ``exp`` and ``sin`` may differ by an ulp, see docs/kernels.md).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy

from .batched import Batched, current_xp, to_host

__all__ = [
    "philox4x32",
    "uniform53",
    "tree_sum",
    "MCParams",
    "INTEGRANDS",
    "pi_hits",
    "pi_hits_batch",
    "pi_kernel",
    "pi_estimate",
    "integrate",
    "integrate_batch",
    "integrate_kernel",
    "estimate",
    "TAG_PI",
    "TAG_INTEGRATE",
    "TAG_GEMM",
    "TAG_NBODY",
]

MASK32 = 0xFFFFFFFF
_M0, _M1 = 0xD2511F53, 0xCD9E8D57  # Philox4x32 multipliers
_W0, _W1 = 0x9E3779B9, 0xBB67AE85  # Weyl key increments

# The counter's last word: one stream family per kernel.
TAG_PI, TAG_INTEGRATE, TAG_GEMM, TAG_NBODY = 1, 2, 3, 4

# Points per step of a task: bounds memory (about 10 arrays of CHUNK * batch
# words) whatever ``samples`` is.  Fixed, so results never depend on the device.
CHUNK = 1 << 16


def philox4x32(counter, key, xp=numpy, rounds: int = 10):
    """Philox4x32-``rounds`` of broadcastable arrays: 4 counter words, 2 key words.

    Words may be ints or integer arrays (taken mod 2**32); returns 4 uint64
    arrays holding the 32-bit output words.
    """
    u64 = xp.uint64
    m = u64(MASK32)
    c0, c1, c2, c3 = (xp.asarray(c, dtype=u64) & m for c in counter)
    k0, k1 = (xp.asarray(k, dtype=u64) & m for k in key)
    m0, m1, w0, w1, s32 = u64(_M0), u64(_M1), u64(_W0), u64(_W1), u64(32)
    for r in range(rounds):
        if r:
            k0 = (k0 + w0) & m
            k1 = (k1 + w1) & m
        p0 = c0 * m0  # < 2**64: the full 32x32 product
        p1 = c2 * m1
        c0, c1, c2, c3 = (p1 >> s32) ^ c1 ^ k0, p1 & m, (p0 >> s32) ^ c3 ^ k1, p0 & m
    return c0, c1, c2, c3


def uniform53(a, b, xp=numpy):
    """Doubles in [0, 1) from two arrays of 32-bit words (53 random bits, exact)."""
    u64 = xp.uint64
    bits = ((a >> u64(5)) << u64(26)) | (b >> u64(6))
    return bits.astype(xp.float64) * (2.0**-53)


def tree_sum(x, xp=numpy):
    """Sum over the last axis by fixed pairwise halving (element-wise adds only).

    Row results do not depend on the other rows or on the device.
    """
    n = x.shape[-1]
    if n == 0:
        return xp.zeros(x.shape[:-1], dtype=x.dtype)
    while n > 1:
        h = n // 2
        y = x[..., :h] + x[..., h : 2 * h]
        if n % 2:
            y = xp.concatenate([y, x[..., 2 * h :]], axis=-1)
        x, n = y, y.shape[-1]
    return x[..., 0]


@dataclass(frozen=True)
class MCParams:
    """``samples`` points per task from stream ``(task, seed)``; the box and
    integrand are for ``integrate`` only (dimension = ``len(lower)``)."""

    samples: int = 1 << 16
    seed: int = 0
    func: str = "gauss"
    lower: tuple = (0.0,)
    upper: tuple = (1.0,)

    def __post_init__(self):
        if self.samples <= 0 or not 0 <= self.seed <= MASK32:
            raise ValueError("need samples > 0 and 0 <= seed < 2**32")
        if len(self.lower) != len(self.upper) or not self.lower:
            raise ValueError("lower and upper must be non-empty and of equal length")
        if self.func not in INTEGRANDS:
            raise ValueError(f"unknown integrand {self.func!r}; known: {', '.join(sorted(INTEGRANDS))}")


def _gauss(xs, xp):
    """exp(-|x|^2); over [0, 1]^d the integral is (sqrt(pi)/2 * erf(1))**d."""
    s = xs[0] * xs[0]
    for x in xs[1:]:
        s = s + x * x
    return xp.exp(-s)


def _sum_squares(xs, xp):
    """|x|^2; over [0, 1]^d the integral is d/3 (correctly rounded ops only)."""
    s = xs[0] * xs[0]
    for x in xs[1:]:
        s = s + x * x
    return s


INTEGRANDS = {"gauss": _gauss, "sum_squares": _sum_squares}


# -- the batched core: every payload list is flattened to task indices -------------

def _tasks_of(payloads) -> tuple[list[int], list[int]]:
    """Task indices of all payloads, and where each payload's tasks end."""
    tasks, ends = [], []
    for p in payloads:
        idx = list(p) if isinstance(p, range) else [int(p)]
        if any(not 0 <= i <= MASK32 for i in idx):
            raise ValueError(f"task indices must lie in [0, 2**32): {p!r}")
        tasks.extend(idx)
        ends.append(len(tasks))
    return tasks, ends


def _chunks(samples: int):
    for start in range(0, samples, CHUNK):
        yield start, min(samples, start + CHUNK)


def _words(params, tasks, start, stop, word, tag, xp):
    """Philox words for samples start..stop-1 of each task: 4 arrays (tasks, n)."""
    j = xp.arange(start, stop, dtype=xp.uint64)[None, :]
    key0 = xp.asarray(tasks, dtype=xp.uint64)[:, None]
    return philox4x32((j & xp.uint64(MASK32), j >> xp.uint64(32), word, tag), (key0, params.seed), xp)


def _pi_hits_batch_impl(params: MCParams, payloads, xp) -> list[int]:
    tasks, ends = _tasks_of(payloads)
    hits = xp.zeros(len(tasks), dtype=xp.int64)
    limit = xp.uint64(1 << 62)
    for start, stop in _chunks(params.samples):
        w0, w1, _, _ = _words(params, tasks, start, stop, 0, TAG_PI, xp)
        x, y = w0 >> xp.uint64(1), w1 >> xp.uint64(1)
        hits += (x * x + y * y < limit).sum(axis=1, dtype=xp.int64)
    per_task = [int(h) for h in to_host(hits).tolist()]
    out, lo = [], 0
    for hi in ends:
        out.append(sum(per_task[lo:hi]))
        lo = hi
    return out


def _pi_hits_impl(params: MCParams, payload, xp) -> int:
    return _pi_hits_batch_impl(params, [payload], xp)[0]


def _integrate_batch_impl(params: MCParams, payloads, xp) -> list:
    tasks, ends = _tasks_of(payloads)
    f = INTEGRANDS[params.func]
    d = len(params.lower)
    parts = []  # per chunk: (tasks, 2) sums of f and f**2
    for start, stop in _chunks(params.samples):
        xs = []
        for pair in range((d + 1) // 2):
            w0, w1, w2, w3 = _words(params, tasks, start, stop, pair, TAG_INTEGRATE, xp)
            xs += [uniform53(w0, w1, xp), uniform53(w2, w3, xp)]
        xs = [lo + (hi - lo) * u for lo, hi, u in zip(params.lower, params.upper, xs[:d])]
        v = f(xs, xp)
        parts.append(xp.stack([tree_sum(v, xp), tree_sum(v * v, xp)], axis=-1))
    per_task = tree_sum(xp.stack(parts, axis=-1), xp)  # (tasks, 2)
    per_task = to_host(per_task)
    out, lo = [], 0
    for hi in ends:
        # (2, k) -> 2: the tasks of a range payload combine by the same tree
        out.append(tree_sum(numpy.ascontiguousarray(per_task[lo:hi].T)))
        lo = hi
    return out


def _integrate_impl(params: MCParams, payload, xp):
    return _integrate_batch_impl(params, [payload], xp)[0]


# -- kernels --------------------------------------------------------------------------

def pi_hits(params: MCParams, payload) -> int:
    """Points of task ``payload`` (an index or a range of them) inside the quarter disc."""
    return _pi_hits_impl(params, payload, current_xp())


def pi_hits_batch(params: MCParams, payloads) -> list[int]:
    """``[pi_hits(params, p) for p in payloads]`` in one pass over the device."""
    return _pi_hits_batch_impl(params, payloads, current_xp())


def integrate(params: MCParams, payload):
    """``numpy.array([sum f, sum f**2])`` over the points of task ``payload``."""
    return _integrate_impl(params, payload, current_xp())


def integrate_batch(params: MCParams, payloads) -> list:
    """``[integrate(params, p) for p in payloads]``, bit for bit, in one pass."""
    return _integrate_batch_impl(params, payloads, current_xp())


pi_hits.batch = pi_hits_batch  # type: ignore[attr-defined]  # the batched form (kernels/batched.py)
integrate.batch = integrate_batch  # type: ignore[attr-defined]  # the batched form (kernels/batched.py)


def pi_kernel(params: MCParams) -> Batched:
    """``pi_hits`` bound to ``params``, with its batched form."""
    return Batched(functools.partial(pi_hits, params), functools.partial(pi_hits_batch, params),
                   max_batch=_max_batch(params))


def integrate_kernel(params: MCParams) -> Batched:
    """``integrate`` bound to ``params``, with its batched form."""
    return Batched(functools.partial(integrate, params), functools.partial(integrate_batch, params),
                   max_batch=_max_batch(params))


def _max_batch(params: MCParams) -> int:
    # About a dozen live 8-byte arrays of (tasks, min(samples, CHUNK)): ~1 GiB at 2**23 elements.
    return max(1, (1 << 23) // min(params.samples, CHUNK))


def pi_estimate(params: MCParams, n_tasks: int, hits: int) -> float:
    """pi from the total of ``pi_hits`` over ``n_tasks`` tasks."""
    return 4.0 * hits / (n_tasks * params.samples)


def estimate(params: MCParams, n_tasks: int, sums) -> tuple[float, float]:
    """(integral, standard error) from the total of ``integrate`` over ``n_tasks`` tasks."""
    n = n_tasks * params.samples
    s, s2 = (float(v) for v in to_host(sums))
    mean = s / n
    var = max(s2 / n - mean * mean, 0.0)
    volume = math.prod(hi - lo for lo, hi in zip(params.lower, params.upper))
    return volume * mean, volume * math.sqrt(var / n)
