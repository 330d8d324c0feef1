"""Escape-time Mandelbrot image: an irregular data-parallel workload.

Pixel ``(y, x)`` of a ``height x width`` image samples the point
``c = x_min + x * (x_max - x_min) / width + 1j * (y_min + y * (y_max - y_min) / height)``
(the lower-left corner of the pixel, so ``x_min`` and ``y_min`` are sampled
exactly).  Its value is the escape iteration: with ``z_0 = 0`` and
``z_n = z_{n-1}**2 + c``, the first ``n`` in ``1..max_iter`` with ``|z_n| > 2``
(tested as ``re**2 + im**2 > 4``), or ``max_iter`` if it never escapes.  So
``c = 0`` and ``c = -2`` (where ``z`` sits on ``|z| = 2``) give ``max_iter``,
``c = 2+2j`` gives 1 and ``c = 1`` gives 3.

Points inside the set run all ``max_iter`` iterations while outside ones
stop early, so rows through the set's middle cost far more than edge rows.

Kernels compute with ``ctx.xp`` (numpy or cupy) inside a runtime, numpy
otherwise, and return an int32 array of that module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy

__all__ = ["MandelbrotParams", "escape_counts", "row_kernel", "tile_kernel", "serial_image"]


@dataclass(frozen=True)
class MandelbrotParams:
    width: int = 256
    height: int = 256
    max_iter: int = 256
    x_min: float = -2.0
    x_max: float = 1.0
    y_min: float = -1.5
    y_max: float = 1.5


def _xp():
    # The runtime's array module when called as a kernel, numpy otherwise.
    from hpcmicro import context

    try:
        return context().xp
    except RuntimeError:
        return numpy


def escape_counts(c, max_iter: int, xp=numpy):
    """Escape iteration of every point of the complex array ``c`` (any shape)."""
    c = xp.asarray(c, dtype=xp.complex128)
    shape = c.shape
    c = c.ravel()
    counts = xp.full(c.shape, max_iter, dtype=xp.int32)
    idx = xp.arange(c.size)
    z = xp.zeros_like(c)
    for n in range(1, max_iter + 1):
        if idx.size == 0:
            break
        z = z * z + c
        escaped = (z.real * z.real + z.imag * z.imag) > 4.0
        counts[idx[escaped]] = n
        # Keep iterating only the active points: the cost is then the true
        # per-pixel work, and escaped values never grow large enough to overflow.
        keep = ~escaped
        z, c, idx = z[keep], c[keep], idx[keep]
    return counts.reshape(shape)


def _coords(params: MandelbrotParams, rows: range, cols: range, xp):
    dx = (params.x_max - params.x_min) / params.width
    dy = (params.y_max - params.y_min) / params.height
    # ranges become device arrays through arange (cupy takes no range objects)
    re = params.x_min + xp.arange(cols.start, cols.stop, cols.step, dtype=xp.float64) * dx
    im = params.y_min + xp.arange(rows.start, rows.stop, rows.step, dtype=xp.float64) * dy
    return re[None, :] + 1j * im[:, None]


def row_kernel(params: MandelbrotParams, y):
    """Escape counts of image row ``y`` (int32, length ``width``).

    ``y`` may also be a ``range`` of rows (the payload of a ``Range``
    decomposition): the result is then those rows, shape ``(len(y), width)``.
    """
    xp = _xp()
    rows = y if isinstance(y, range) else range(y, y + 1)
    counts = escape_counts(_coords(params, rows, range(params.width), xp), params.max_iter, xp)
    return counts if isinstance(y, range) else counts[0]


def tile_kernel(params: MandelbrotParams, slices: tuple):
    """Escape counts of the tile ``image[slices]``, ``slices = (rows, cols)``."""
    xp = _xp()
    rows, cols = slices
    c = _coords(params, range(*rows.indices(params.height)), range(*cols.indices(params.width)), xp)
    return escape_counts(c, params.max_iter, xp)


def serial_image(params: MandelbrotParams) -> numpy.ndarray:
    """The whole image, computed with numpy in one call (the test reference)."""
    c = _coords(params, range(params.height), range(params.width), numpy)
    return escape_counts(c, params.max_iter, numpy)
