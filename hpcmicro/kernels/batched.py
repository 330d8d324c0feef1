"""Batched kernels, and the small helpers the GPU-ready kernels share.

A kernel runs one payload.  On a GPU, many tiny tasks each pay a kernel
launch (and a host/device copy), so a kernel may also offer a *batched form*:
``fn(list_of_payloads) -> list_of_results``, same order, each result
identical to what the kernel returns for that payload alone.

Where a worker finds it (``batch_form``):

* ``kernel.batch`` when the kernel is an object with that attribute, such as
  ``Batched`` below or a one-argument function with ``f.batch = g`` set;
* for ``functools.partial(f, *args)``: ``f.batch`` called with the same
  bound arguments, ``partial(f.batch, *args)(payloads)``.  The library's
  two-argument kernels follow this (``montecarlo.pi_hits.batch is
  montecarlo.pi_hits_batch``).

``Batched(func, batch)`` bundles both callables in one picklable object: its
``__call__`` runs one payload, ``.batch`` a list.  Kernel modules export
ready-made ones (``montecarlo.pi_kernel(params)`` and so on).

Nothing here imports MPI or cupy.
"""

from __future__ import annotations

import numpy

from ..engine.executor import batch_form  # noqa: F401  (part of this module's API)
from ..identity import describe_callable as _describe  # one implementation, shared with the runtime

__all__ = ["Batched", "batch_form", "current_xp", "current_rank", "to_host"]


class Batched:
    """A kernel with a batched form: ``k(payload)`` and ``k.batch(payloads)``.

    ``max_batch``: a hint, the most payloads per ``batch`` call that keeps
    the kernel's working memory near 1 GiB (None: no hint).  Picklable when
    ``func`` and ``batch`` are (module-level functions or
    ``functools.partial`` of them).  The instance's ``__qualname__`` names
    both callables and digests their bound arguments, so the runtime's kernel
    description (used to check that ranks agree, and in checkpoint identities)
    tells two parameter sets apart.
    """

    def __init__(self, func, batch, max_batch: int | None = None):
        if not callable(func) or not callable(batch):
            raise TypeError("Batched(func, batch) needs two callables")
        if max_batch is not None and (not isinstance(max_batch, int) or max_batch < 1):
            raise ValueError(f"max_batch must be None or an int >= 1, got {max_batch!r}")
        self.func = func
        self.batch_func = batch
        self.max_batch = max_batch
        self.__qualname__ = f"Batched[{_describe(func)}|{_describe(batch)}]"

    def __call__(self, payload):
        return self.func(payload)

    def batch(self, payloads) -> list:
        payloads = list(payloads)
        out = list(self.batch_func(payloads))
        if len(out) != len(payloads):
            raise ValueError(f"batched form returned {len(out)} results for {len(payloads)} payloads")
        return out

    def __repr__(self):
        return self.__qualname__


def current_xp():
    """The running task's array module (``hm.context().xp``), numpy outside a runtime."""
    from hpcmicro import context

    try:
        return context().xp
    except RuntimeError:
        return numpy


def current_rank() -> int:
    """The running task's worker id (its MPI rank; 1..N for a one-rank run's workers), 0 outside a runtime."""
    from hpcmicro import context

    try:
        return context().worker
    except RuntimeError:
        return 0


def to_host(a):
    """``a`` as a numpy array (cupy arrays are copied back with ``.get()``)."""
    if isinstance(a, numpy.ndarray):
        return a
    get = getattr(a, "get", None)
    return get() if callable(get) else numpy.asarray(a)
