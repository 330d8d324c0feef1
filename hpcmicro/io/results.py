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

Reading is guarded the way it can be. HDF5 does not defend itself against
corrupt metadata (a flipped bit can hang or crash the library), so
:func:`file_kind` and :func:`read_result` first read the file's opening bytes
with plain ``open``: a checkpoint (its user block starts with
``checkpoint.MAGIC``) is never handed to h5py here, since only
``read_checkpoint`` may parse one, after its SHA-256 matches; bytes that are
no HDF5 file never reach h5py; and an HDF5 file's superblock is checked first
(version, field sizes, base address, the end-of-file address against the
file's size, which catches truncation, and the root object's address).
A result file carries no checksum of its own: a job's finalize hook (and any
user) adds datasets to it with h5py after it is written, which a whole-file
digest would turn into "corrupted". A bit flipped deeper in a result file's
metadata therefore still reaches HDF5, and can crash it or make it loop for
ever. Result files are never read by a running job (a restart reads the
checkpoint); the ``hpcmicro`` command (``inspect``, ``report``) parses them in
a child process under a timeout (``app/cli.py``, ``read_file_safely``); a
Python caller of :func:`read_result` on a file it does not trust can do the
same.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import struct
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

import numpy as np

from .. import __version__

__all__ = ["ResultAttrs", "DatasetInfo", "Result", "write_result", "read_result", "file_kind", "sniff", "as_numeric"]

CALLS = ("map", "map_reduce")


def _json_object(text: Any, name: str) -> dict:
    """The JSON object stored in attribute ``name``; ValueError naming it for anything else."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        raise ValueError(f"attribute {name!r} is not JSON text: {_short(text)}") from None
    if not isinstance(value, dict):
        raise ValueError(f"attribute {name!r} holds JSON {type(value).__name__}, not an object")
    return value


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


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
            stats=_json_object(attrs["stats"], "stats"),
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
    """``"result"`` or ``"checkpoint"``, told by the first bytes before HDF5 parses anything.

    A file that starts with the checkpoint header is a ``"checkpoint"`` without
    HDF5 being asked (``read_checkpoint`` then verifies it before parsing).
    OSError when the file cannot be read or holds no sound HDF5 file (missing,
    a folder, random bytes, truncated); ValueError for an HDF5 file that is
    neither a result file nor a checkpoint.
    """
    import h5py

    from .checkpoint import FORMAT

    if sniff(path) == "checkpoint":
        return "checkpoint"
    with h5py.File(path, "r") as f:
        attrs = f.attrs
        if attrs.get("format") == FORMAT:  # a checkpoint of format 1 (no header); read_checkpoint refuses it
            return "checkpoint"
        if "stats" in attrs:
            return "result"
    raise ValueError(f"{path}: neither an hpcmicro result file (no 'stats' attribute) nor a checkpoint")


# What HDF5 would read first: the superblock at offset 0 (a result file has no user block). The longest part
# parsed here: version 1's 28 bytes of fixed fields, then six 8-byte addresses.
_SUPERBLOCK_BYTES = 28 + 6 * 8
_FIELD_SIZES = (2, 4, 8, 16, 32)  # the sizes of offsets and lengths HDF5 allows


def sniff(path: str | os.PathLike) -> str:
    """``"checkpoint"`` or ``"hdf5"`` (a sound-looking HDF5 file at offset 0), read with plain ``open``.

    OSError for a file that cannot be read, is no HDF5 file, or whose superblock
    is damaged or points past its end (truncated); ValueError for an HDF5 file
    behind a user block that is not a checkpoint's header.
    """
    from .checkpoint import HDF5_SIGNATURE, HEADER_SIZE, MAGIC

    with open(path, "rb") as fh:  # FileNotFoundError, IsADirectoryError, PermissionError
        head = fh.read(max(HEADER_SIZE + len(HDF5_SIGNATURE), _SUPERBLOCK_BYTES))
        size = os.fstat(fh.fileno()).st_size
    if head.startswith(MAGIC):
        return "checkpoint"
    if head.startswith(HDF5_SIGNATURE):
        problem = _superblock_problem(head, size)
        if problem:
            raise OSError(f"{path}: damaged HDF5 file: {problem}")
        return "hdf5"
    if head[HEADER_SIZE:].startswith(HDF5_SIGNATURE):
        raise ValueError(f"{path}: neither an hpcmicro result file nor a checkpoint: an HDF5 file behind a "
                         f"{HEADER_SIZE}-byte block that is not a checkpoint header (a checkpoint whose header "
                         f"is damaged, or another program's file)")
    raise OSError(f"{path}: not an HDF5 file" + (" (empty)" if size == 0 else ""))


def _superblock_problem(head: bytes, size: int) -> str | None:
    """What is wrong with the HDF5 superblock at the start of ``head`` (None if it looks sound).

    Layout: the HDF5 file format specification, "Superblock" (versions 0 and 1
    share one layout, 2 and 3 another).
    """
    if len(head) < 16:
        return f"truncated inside its superblock ({size} bytes)"
    version = head[8]
    if version in (0, 1):
        offsets, lengths = head[13], head[14]
        fields = 24 + (4 if version == 1 else 0)  # v1 adds the indexed-storage K and two reserved bytes
        names: tuple[str, ...] = ("base", "free-space", "end-of-file", "driver", "root link name",
                                  "root object header")
    elif version in (2, 3):
        offsets, lengths = head[9], head[10]
        fields = 12
        names = ("base", "extension", "end-of-file", "root object header")
    else:
        return f"unknown superblock version {version}"
    if offsets not in _FIELD_SIZES or lengths not in _FIELD_SIZES:
        return f"impossible field sizes {offsets} and {lengths}"
    fmt = {2: "H", 4: "I", 8: "Q"}.get(offsets)
    if fmt is None:  # 16 or 32 bytes: legal, but nothing hpcmicro or h5py writes
        return f"{offsets}-byte addresses"
    if len(head) < fields + len(names) * offsets:
        return f"truncated inside its superblock ({size} bytes)"
    addresses = dict(zip(names, struct.unpack_from(f"<{len(names)}{fmt}", head, fields)))
    eof = addresses["end-of-file"]
    if addresses["base"] != 0:
        return f"base address {addresses['base']} for a superblock at offset 0"
    if eof > size:
        return f"truncated: it should hold {eof} bytes and holds {size}"
    if not 0 < addresses["root object header"] < eof:
        return f"root object at {addresses['root object header']}, outside the file's {eof} bytes"
    return None


def read_result(path: str | os.PathLike, value: bool = True) -> Result:
    """Read a result file; ``value=False`` reads only its attributes and the datasets' shapes.

    ValueError when the file is no result file (or its ``/result`` cannot be decoded).
    """
    import h5py

    if sniff(path) == "checkpoint":  # never parsed here: read_checkpoint verifies it first
        raise ValueError(f"{path}: a checkpoint, not a result file")
    with h5py.File(path, "r") as f:
        if "stats" not in f.attrs:
            raise ValueError(f"{path}: not an hpcmicro result file (no 'stats' attribute)")
        try:
            attrs = ResultAttrs.from_hdf5(f.attrs)
        except ValueError as exc:  # e.g. a 'stats' that is not JSON text
            raise ValueError(f"{path}: not a readable hpcmicro result file: {exc}") from None
        except (TypeError, KeyError, OverflowError) as exc:  # another attribute of the wrong kind
            raise ValueError(f"{path}: not a readable hpcmicro result file: its attributes do not parse "
                             f"({type(exc).__name__}: {exc})") from None
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
