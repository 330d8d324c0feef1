"""Result files of ``hpcmicro run``: the one module that writes and reads them.

The layout (HDF5) is the one hpcmicro 0.1.0 wrote, so every existing file reads:

``/result``, a dataset with a string attribute ``encoding``:

* ``"native"``: a plain numeric dataset. ``map_reduce``: the value (0-d for a
  number, else the array's own shape and dtype). ``map``: the results stacked
  along a new first axis in task-id order, shape ``(n_results, *shape)``, when
  every result is a number or a numeric array of one shape (``np.stack``
  promotes mixed types); no results give float64 of shape ``(0,)``.
* ``"pickle"``: anything else, each value pickled into a variable-length
  ``uint8`` entry. ``map``: shape ``(n_results,)``; ``map_reduce``: 0-d.

Root attributes, all scalars:

=================== ======= ===================================================
``spec``            str     the job spec's TOML text, verbatim
``job``             str     the job's name
``kernel``          str     ``"module:function"`` as written
``args``            str     the kernel's keyword arguments as JSON
``call``            str     ``"map"`` or ``"map_reduce"``
``op``              str     the op; ``""`` for ``map``
``policy``          str     the scheduling policy used
``tasks``           str     the task source and its value as JSON: ``range {"n": 1000, "chunk": 1}``
``ranks``           int     MPI ranks, the master included
``wall_s``          float   the call's wall time on the master, seconds
``hpcmicro_version`` str    the version that wrote the file
``created``         str     ISO 8601 UTC time of writing
``stats``           str     JSON of ``CallStats.as_dict()``
``trace``           str     absolute path of the run's Chrome trace; ``""`` for none
=================== ======= ===================================================

A job's finalize hook may add datasets of its own (``image``, ``C``);
:func:`read_result` lists every dataset.

A file is written to a temporary file beside the target, fsynced and renamed
over it, so a reader sees the old file or the whole new one. Reading a
``"pickle"`` result unpickles, which runs code from the file: read only
results you trust.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

import numpy as np

from .. import __version__

__all__ = ["ResultAttrs", "DatasetInfo", "Result", "write_result", "read_result", "file_kind", "as_numeric"]

CALLS = ("map", "map_reduce")


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ResultAttrs:
    """The attributes of a result file, typed (see the module docstring for how each is stored)."""

    call: str
    policy: str
    ranks: int
    wall_s: float
    stats: dict
    spec: str = ""
    job: str = ""
    kernel: str = ""
    args: dict = field(default_factory=dict)
    op: str | None = None
    tasks_source: str = ""  # "range", "blocks" or "list"
    tasks_value: Any = None  # what the spec gives under [tasks]
    trace: str | None = None
    version: str = __version__
    created: str = field(default_factory=_utc_now)

    @property
    def tasks(self) -> str:
        """The ``tasks`` attribute as stored: ``range {"n": 1000, "chunk": 1}``."""
        return f"{self.tasks_source} {json.dumps(self.tasks_value, default=str)}"

    def to_hdf5(self) -> dict:
        return {
            "trace": self.trace or "",
            "spec": self.spec,
            "job": self.job,
            "kernel": self.kernel,
            "args": json.dumps(self.args, default=str),
            "call": self.call,
            "op": self.op or "",
            "policy": self.policy,
            "tasks": self.tasks,
            "ranks": int(self.ranks),
            "wall_s": float(self.wall_s),
            "hpcmicro_version": self.version,
            "created": self.created,
            "stats": json.dumps(self.stats, default=str),
        }

    @classmethod
    def from_hdf5(cls, attrs: Mapping[str, Any]) -> "ResultAttrs":
        """Parse stored attributes; those a file lacks get their defaults (``stats`` is required)."""
        source, _, value = str(attrs.get("tasks", "")).partition(" ")
        try:
            tasks_value = json.loads(value) if value else None
        except ValueError:  # not JSON: keep the text
            tasks_value = value
        return cls(
            call=str(attrs.get("call", "")),
            policy=str(attrs.get("policy", "")),
            ranks=int(attrs.get("ranks", 0)),
            wall_s=float(attrs.get("wall_s", 0.0)),
            stats=json.loads(attrs["stats"]),
            spec=str(attrs.get("spec", "")),
            job=str(attrs.get("job", "")),
            kernel=str(attrs.get("kernel", "")),
            args=json.loads(attrs.get("args", "{}") or "{}"),
            op=str(attrs.get("op", "")) or None,
            tasks_source=source,
            tasks_value=tasks_value,
            trace=str(attrs.get("trace", "")) or None,
            version=str(attrs.get("hpcmicro_version", "")),
            created=str(attrs.get("created", "")),
        )


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset of a result file, described without reading it."""

    name: str  # "/result", "/image", ...
    shape: tuple
    dtype: str
    encoding: str | None  # the ``encoding`` attribute, where there is one


@dataclass(frozen=True)
class Result:
    """A result file read back: ``value`` as written (None when read with ``value=False``)."""

    path: str
    attrs: ResultAttrs
    encoding: str
    datasets: tuple[DatasetInfo, ...]
    value: Any = None


# -- writing ------------------------------------------------------------------------------


def write_result(path: str | os.PathLike, value: Any, attrs: ResultAttrs) -> None:
    """Write ``value`` (the result of ``attrs.call``) and ``attrs`` to ``path`` atomically.

    Raises (and leaves ``path`` as it was) when the value cannot be stored,
    e.g. a result that does not pickle.
    """
    import h5py

    if attrs.call not in CALLS:
        raise ValueError(f"call must be one of {', '.join(CALLS)}, got {attrs.call!r}")
    path = os.path.abspath(path)
    folder, base = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            _write_value(f, attrs.call, value)
            f.attrs.update(attrs.to_hdf5())
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; an output is a normal file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_value(f, call: str, value: Any) -> None:
    import h5py

    native = as_numeric(value) if call == "map_reduce" else _stacked(value)
    if native is not None:
        ds = f.create_dataset("result", data=native)
        ds.attrs["encoding"] = "native"
        return
    vlen = h5py.vlen_dtype(np.uint8)
    if call == "map_reduce":
        ds = f.create_dataset("result", shape=(), dtype=vlen)
        ds[()] = _pickled(value)
    else:
        blobs = np.empty(len(value), dtype=object)
        for i, item in enumerate(value):
            blobs[i] = _pickled(item)
        ds = f.create_dataset("result", data=blobs, dtype=vlen)
    ds.attrs["encoding"] = "pickle"


def as_numeric(value: Any) -> np.ndarray | None:
    """``value`` as a numpy array if it is a number or a numeric array (stored natively), else None."""
    if not isinstance(value, (int, float, complex, np.number, np.bool_, np.ndarray)):
        return None
    array = np.asarray(value)
    return array if array.dtype.kind in "biufc" else None  # e.g. an int past 64 bits is 'O'


def _stacked(values) -> np.ndarray | None:
    """The ``map`` results as one array (task axis first) if all are numeric alike, else None."""
    arrays = []
    for value in values:
        array = as_numeric(value)
        if array is None:
            return None
        arrays.append(array)
    if not arrays:
        return np.empty((0,))
    if len({a.shape for a in arrays}) != 1:
        return None
    return np.stack(arrays)


def _pickled(value: Any) -> np.ndarray:
    return np.frombuffer(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- reading ------------------------------------------------------------------------------


def file_kind(path: str | os.PathLike) -> str:
    """``"result"`` or ``"checkpoint"``; ValueError for another HDF5 file, OSError for no HDF5 file."""
    import h5py

    from .checkpoint import FORMAT

    with h5py.File(path, "r") as f:
        attrs = f.attrs
        if attrs.get("format") == FORMAT:
            return "checkpoint"
        if "stats" in attrs:
            return "result"
    raise ValueError(f"{path}: neither an hpcmicro result file (no 'stats' attribute) nor a checkpoint")


def read_result(path: str | os.PathLike, value: bool = True) -> Result:
    """Read a result file; ``value=False`` reads only its attributes and the datasets' shapes.

    ValueError when the file is no result file (or its ``/result`` cannot be decoded).
    """
    import h5py

    with h5py.File(path, "r") as f:
        if "stats" not in f.attrs:
            raise ValueError(f"{path}: not an hpcmicro result file (no 'stats' attribute)")
        attrs = ResultAttrs.from_hdf5(f.attrs)
        datasets: list[DatasetInfo] = []
        f.visititems(lambda name, obj: datasets.append(_describe(name, obj)) if isinstance(obj, h5py.Dataset)
                     else None)
        if "result" not in f:
            raise ValueError(f"{path}: result file without a /result dataset")
        ds = f["result"]
        encoding = str(ds.attrs.get("encoding", "native"))
        if encoding not in ("native", "pickle"):
            raise ValueError(f"{path}: /result has an unknown encoding {encoding!r}")
        data = _read_value(ds, encoding) if value else None
    return Result(os.fspath(path), attrs, encoding, tuple(datasets), data)


def _describe(name: str, ds) -> DatasetInfo:
    encoding = ds.attrs.get("encoding")
    return DatasetInfo(f"/{name}", tuple(ds.shape), str(ds.dtype), None if encoding is None else str(encoding))


def _read_value(ds, encoding: str) -> Any:
    if encoding == "native":
        return ds[()]  # an array, or a numpy scalar for a 0-d dataset
    if ds.shape == ():  # map_reduce: one pickled value
        return pickle.loads(ds[()].tobytes())
    return [pickle.loads(blob.tobytes()) for blob in ds[:]]
