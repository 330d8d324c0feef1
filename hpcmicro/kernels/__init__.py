"""Kernel library: plain module-level task functions for the runtime.

Import the submodule you need; this package imports nothing itself (and
nothing here imports MPI), so kernels load cheaply on every rank.

* ``hpcmicro.kernels.uts``: Unbalanced Tree Search (SHA-1 RNG, bit-compatible
  with the reference), ``count_kernel`` spawns a node's children and returns 1.
* ``hpcmicro.kernels.mandelbrot``: escape-time Mandelbrot rows and tiles,
  written against ``ctx.xp`` (numpy or cupy).
* ``hpcmicro.kernels.synthetic``: ``noop``, ``spin``, ``sleep_task``,
  heavy-tailed task durations and order-sensitive values for reduction tests.

Kernels that need parameters take them first, to be bound with
``functools.partial`` (which pickles, unlike a lambda or closure).
"""
