"""Element-wise transform of an HDF5 dataset, one chunk per task.

Task payload: a tuple of slices, one chunk of the input dataset (the payloads
of ``tasks(params)``, an ``hm.Blocks`` over the dataset's shape with its chunk
shape as the block; ``params.block`` overrides it, and must for a contiguous
dataset).  The kernel reads the chunk, applies ``FUNCTIONS[params.func]``
with ``xp`` (numpy or cupy; the result is float64) and writes it.

Writing: h5py has no parallel HDF5 here, and no two processes may write one
HDF5 file.  So each rank writes only its own *part file*,
``<parts_dir>/part-<rank>.h5`` (default ``parts_dir``: ``<output>.parts``),
holding a full-shape chunked dataset of which it fills the chunks it ran
(HDF5 allocates a chunk only when written, so a part costs what it holds).
The kernel returns a small record, ``(part file name, slices)``.  After the
map, rank 0 calls ``finalize(params, records)``: it writes ``params.output``
with an HDF5 *virtual dataset* that maps every chunk to the part that wrote
it (paths relative to the output's folder, so the folder can move).  No
data is copied; ``finalize(..., materialize=True)`` instead copies it into
a plain dataset and deletes the parts.  A chunk run twice (a retry, a task
handed to another worker after ``task_timeout``) lands in two parts; the
record the map returned decides which one is used.

Read the output after every rank has left the runtime: a kernel abandoned
after ``task_timeout`` may still be writing its part when ``map`` returns.

The input is opened read-only without HDF5 file locking (many ranks read
it at once); files are opened per task (per batch in the batched form),
which costs about a millisecond: size chunks well above that.

``transform_batch`` reads all chunks of a batch in one file open, moves them
to the device in one copy, applies the function once and writes them with
one open of the part file; its records and data equal the one-by-one ones.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy

from .batched import Batched, current_rank, current_xp, to_host

__all__ = [
    "FUNCTIONS",
    "TransformParams",
    "tasks",
    "transform",
    "transform_batch",
    "transform_kernel",
    "finalize",
    "reference",
]


def _sqrt_sin(x, xp):
    return xp.sqrt(xp.abs(x)) * xp.sin(x)


def _scale(x, xp, a=1.0, b=0.0):
    return a * x + b


# name -> f(x, xp, *params.args); a function added here must be added on every rank.
FUNCTIONS = {"sqrt_sin": _sqrt_sin, "scale": _scale}


@dataclass(frozen=True)
class TransformParams:
    input: str
    dataset: str
    output: str
    func: str = "sqrt_sin"
    args: tuple = ()
    out_dataset: str | None = None  # default: the input dataset's name
    parts_dir: str | None = None  # default: output + ".parts"
    block: tuple | None = None  # default: the input's chunk shape

    def __post_init__(self):
        if self.func not in FUNCTIONS:
            raise ValueError(f"unknown function {self.func!r}; known: {', '.join(sorted(FUNCTIONS))}")

    @property
    def out_name(self) -> str:
        return self.out_dataset or self.dataset

    @property
    def parts(self) -> str:
        return os.path.abspath(self.parts_dir or self.output + ".parts")


def _open_input(params):
    import h5py

    return h5py.File(os.path.abspath(params.input), "r", locking=False)


def _ds_layout(params, ds) -> tuple[tuple, tuple]:
    block = params.block or ds.chunks
    if block is None:
        raise ValueError(f"{params.dataset} is not chunked: give TransformParams(block=...)")
    return ds.shape, tuple(block)


def _layout(params) -> tuple[tuple, tuple]:
    """(shape, block) of the input dataset."""
    with _open_input(params) as f:
        return _ds_layout(params, f[params.dataset])


def tasks(params: TransformParams):
    """An ``hm.Blocks`` over the dataset: one task per chunk."""
    from hpcmicro.engine.tasks import Blocks

    return Blocks(*_layout(params))


def _write(params, rank: int, shape, block, items) -> str:
    """Write ``(slices, array)`` items into this rank's part file; returns its name."""
    import h5py

    os.makedirs(params.parts, exist_ok=True)
    name = f"part-{rank:05d}.h5"
    with h5py.File(os.path.join(params.parts, name), "a") as f:
        ds = f.require_dataset(params.out_name, shape=shape, dtype="f8", chunks=block,
                               fillvalue=numpy.nan, exact=True)
        for slices, data in items:
            ds[slices] = data
    return name


def _batch_impl(params: TransformParams, payloads, xp, rank: int = 0) -> list:
    payloads = [tuple(p) for p in payloads]
    with _open_input(params) as f:
        ds = f[params.dataset]
        shape, block = _ds_layout(params, ds)
        if xp is numpy or not payloads:
            items = _transform_host(params, ds, payloads, xp)
        else:
            items = _transform_pipelined(params, ds, payloads, xp)
    if not items:
        return []
    name = _write(params, rank, shape, block, items)
    return [(os.path.relpath(os.path.join(params.parts, name), _out_dir(params)), p) for p in payloads]


def _transform_host(params, ds, payloads, xp) -> list:
    """Read every chunk, one vectorized compute, results as ``(slices, array)``."""
    chunks = [numpy.asarray(ds[p]) for p in payloads]
    flat = numpy.concatenate([c.ravel() for c in chunks]) if chunks else numpy.empty(0)
    y = to_host(FUNCTIONS[params.func](xp.asarray(flat, dtype=xp.float64), xp, *params.args))
    items, lo = [], 0
    for p, c in zip(payloads, chunks):
        items.append((p, y[lo : lo + c.size].reshape(c.shape)))
        lo += c.size
    return items


def _transform_pipelined(params, ds, payloads, cupy) -> list:
    """The GPU path: copies overlap compute.

    Chunk k is read from the file into pinned host memory while the device
    still works on chunk k-1; its host-to-device copy, compute and
    device-to-host copy are queued asynchronously on one of two streams, so the
    disk, the copy engines and the device work at the same time. The bytes are
    those of the host path.
    """
    import cupyx

    fn = FUNCTIONS[params.func]
    streams = [cupy.cuda.Stream(non_blocking=True) for _ in range(2)]
    queued = []
    for k, p in enumerate(payloads):
        host = numpy.asarray(ds[p], dtype=numpy.float64)  # overlaps the device work queued before
        pinned_in = cupyx.empty_pinned(host.shape, dtype=numpy.float64)
        pinned_in[...] = host
        stream = streams[k % 2]
        with stream:
            dev = cupy.empty(host.shape, dtype=cupy.float64)
            dev.set(pinned_in, stream=stream)
            out = fn(dev, cupy, *params.args)
            pinned_out = cupyx.empty_pinned(host.shape, dtype=numpy.float64)
            out.get(stream=stream, out=pinned_out)
        queued.append((stream, p, pinned_in, pinned_out))  # keep the buffers alive until synced
    items = []
    for stream, p, _, pinned_out in queued:
        stream.synchronize()
        items.append((p, numpy.array(pinned_out)))
    return items


def _impl(params: TransformParams, payload, xp, rank: int = 0):
    return _batch_impl(params, [payload], xp, rank)[0]


def transform(params: TransformParams, payload):
    """Transform one chunk into this rank's part file; returns ``(part, slices)``."""
    return _impl(params, payload, current_xp(), current_rank())


def transform_batch(params: TransformParams, payloads) -> list:
    """``[transform(params, p) for p in payloads]`` with one read, one compute, one write."""
    return _batch_impl(params, payloads, current_xp(), current_rank())


transform.batch = transform_batch  # type: ignore[attr-defined]  # the batched form (kernels/batched.py)


def transform_kernel(params: TransformParams) -> Batched:
    """``transform`` bound to ``params``, with its batched form."""
    return Batched(functools.partial(transform, params), functools.partial(transform_batch, params))


def _out_dir(params) -> str:
    return os.path.dirname(os.path.abspath(params.output))


def finalize(params: TransformParams, records, materialize: bool = False) -> str:
    """Write ``params.output`` from the records of the map (run on one rank, after it).

    Checks that the records cover every chunk once.  Default: a virtual
    dataset over the part files.  ``materialize``: a plain chunked dataset
    with the data copied, and the parts deleted.  Returns the output path.
    """
    import h5py

    shape, block = _layout(params)
    expected = {tuple((s.start, s.stop) for s in p) for p in tasks(params)}
    got = [tuple((s.start, s.stop) for s in slices) for _, slices in records]
    if len(got) != len(expected) or set(got) != expected:
        raise ValueError(f"records cover {len(set(got) & expected)} of {len(expected)} chunks "
                         f"({len(got)} records): pass the whole result of the map")
    out_dir = _out_dir(params)
    output = os.path.abspath(params.output)
    layout = h5py.VirtualLayout(shape=shape, dtype="f8")
    for part, slices in records:
        src = h5py.VirtualSource(part, params.out_name, shape=shape, dtype="f8")
        layout[slices] = src[slices]
    if not materialize:
        with h5py.File(output, "w") as f:
            f.create_virtual_dataset(params.out_name, layout, fillvalue=numpy.nan)
        return output
    # Copy through a temporary virtual dataset (its sources resolve next to the output).
    with h5py.File(output, "w") as f:
        virt = f.create_virtual_dataset("__virtual__", layout, fillvalue=numpy.nan)
        real = f.create_dataset(params.out_name, shape=shape, dtype="f8", chunks=block)
        for _, slices in records:
            real[slices] = virt[slices]
        del f["__virtual__"]
    for name in {part for part, _ in records}:
        os.remove(os.path.join(out_dir, name))
    try:
        os.rmdir(params.parts)
    except OSError:
        pass  # other files left there
    return output


def reference(params: TransformParams) -> numpy.ndarray:
    """The whole transformed dataset with numpy in one call (the test reference)."""
    with _open_input(params) as f:
        x = numpy.asarray(f[params.dataset][...], dtype=numpy.float64)
    return FUNCTIONS[params.func](x, numpy, *params.args)
