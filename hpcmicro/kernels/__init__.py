"""Kernel library: plain module-level task functions for the runtime.

Import the submodule you need; this package imports only the small
``Batched`` wrapper (numpy), and nothing here imports MPI or CuPy at import
time, so kernels load cheaply on every rank.

* ``hpcmicro.kernels.uts``: Unbalanced Tree Search (SHA-1 RNG, bit-compatible
  with the reference), ``count_kernel`` spawns a node's children and returns 1.
* ``hpcmicro.kernels.mandelbrot``: escape-time Mandelbrot rows and tiles,
  written against ``ctx.xp`` (numpy or cupy).
* ``hpcmicro.kernels.synthetic``: ``noop``, ``spin``, ``sleep_task``,
  heavy-tailed task durations and order-sensitive values for reduction tests.
* ``hpcmicro.kernels.montecarlo``: Monte Carlo integration and pi from a
  counter-based (Philox4x32) stream keyed by task, bit-identical on CPU and GPU.
* ``hpcmicro.kernels.gemm``: blocked dense matrix multiply.
* ``hpcmicro.kernels.nbody``: pairwise N-body force blocks.
* ``hpcmicro.kernels.hdf5_transform``: element-wise transform of an HDF5
  dataset chunk by chunk (per-rank part files joined by a virtual dataset).
* ``Batched(func, batch)``: a kernel with a batched form, which GPU workers use
  to run many small tasks in one launch (see docs/kernels.md).

Kernels that need parameters take them first, to be bound with
``functools.partial`` (which pickles, unlike a lambda or closure).
"""

from .batched import Batched  # noqa: E402  (numpy only)

__all__ = ["Batched"]
