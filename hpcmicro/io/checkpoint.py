"""HDF5 checkpoints: layout, atomic write, verified load.

One file holds every call of a Runtime, in call order (``/calls/0``,
``/calls/1``, ...), so a script with several phases resumes in the phase it was
in. A call's entry holds what a restart needs and nothing that could be
recomputed: finished results (``map``) or the completed blocks of the combine
tree (``map_reduce``), the root tasks not yet run as intervals, the spawned
tasks not yet run with their payloads, and failed tasks. Its size grows with
finished work, not with the total task count.

Python objects (results, payloads, tree keys) are pickled into uint8
datasets; each dataset carries the SHA-256 of its bytes, checked on load.
Layout reference: docs/checkpoint-format.md.

Crash consistency: a checkpoint is written to ``NAME.tmp-PID`` beside the
target, flushed and fsynced, then renamed over the target with ``os.replace``
(atomic on POSIX) and the directory fsynced. A kill at any moment leaves
either the previous checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import os
import pickle

import numpy as np

from ..engine.cut import CallState
from ..errors import HpcmicroError

__all__ = ["CheckpointError", "CallState", "write_checkpoint", "read_checkpoint", "job_identity", "FORMAT"]

FORMAT = "hpcmicro-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(HpcmicroError):
    """A checkpoint file cannot be used: names the file and the problem."""


def job_identity(kind: str, kernel: str, tasks_digest: str, op: str | None, settings: dict | None = None) -> str:
    """A digest of what defines the job's result; the policy and rank count are not part of it."""
    text = repr((FORMAT_VERSION, kind, kernel, tasks_digest, op, sorted((settings or {}).items())))
    return hashlib.sha256(text.encode()).hexdigest()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_checkpoint(path: str, calls: list[CallState], meta: dict | None = None) -> int:
    """Write every call's state to ``path`` atomically. Returns the file size in bytes."""
    import h5py

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            for key, value in (meta or {}).items():
                f.attrs[key] = value
            calls_group = f.create_group("calls")
            for state in calls:
                g = calls_group.create_group(str(state.index))
                g.attrs["identity"] = state.identity
                g.attrs["kind"] = state.kind
                g.attrs["n_roots"] = state.n_roots
                g.attrs["complete"] = state.complete
                g.attrs["created"] = state.created
                g.attrs["finished"] = state.finished
                roots = np.asarray(state.pending_roots, dtype=np.int64).reshape(-1, 3)
                d = g.create_dataset("pending_roots", data=roots)
                d.attrs["sha256"] = _digest(roots.tobytes())
                for name in CallState._PICKLED:
                    blob = pickle.dumps(getattr(state, name), protocol=pickle.HIGHEST_PROTOCOL)
                    d = g.create_dataset(name, data=np.frombuffer(blob, dtype=np.uint8))
                    d.attrs["sha256"] = _digest(blob)
            f.flush()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return os.path.getsize(path)


def read_checkpoint(path: str) -> tuple[dict, list[CallState]]:
    """Load and verify a checkpoint; raise CheckpointError naming the file and the problem."""
    import h5py

    path = os.fspath(path)
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CheckpointError(f"{path}: not a readable HDF5 file (truncated or corrupted?): {exc}") from None
    with f:
        if f.attrs.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not an hpcmicro checkpoint (format attribute is {f.attrs.get('format')!r})")
        version = int(f.attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise CheckpointError(f"{path}: checkpoint format version {version}, this hpcmicro reads {FORMAT_VERSION}")
        meta = {k: _plain(v) for k, v in f.attrs.items()}
        calls = []
        try:
            group = f["calls"]
            for name in sorted(group, key=int):
                calls.append(_read_call(path, group[name], int(name)))
        except CheckpointError:
            raise
        except Exception as exc:  # h5py raises many kinds on a damaged file
            raise CheckpointError(f"{path}: damaged checkpoint: {type(exc).__name__}: {exc}") from None
    return meta, calls


def _read_call(path, g, index) -> CallState:
    state = CallState(index=index, identity=str(g.attrs["identity"]), kind=str(g.attrs["kind"]),
                      n_roots=int(g.attrs["n_roots"]), complete=bool(g.attrs["complete"]),
                      created=int(g.attrs["created"]), finished=int(g.attrs["finished"]))
    roots = g["pending_roots"][()]
    _verify(path, index, "pending_roots", roots.tobytes(), g["pending_roots"])
    state.pending_roots = [tuple(int(x) for x in row) for row in roots]
    for name in CallState._PICKLED:
        blob = g[name][()].tobytes()
        _verify(path, index, name, blob, g[name])
        setattr(state, name, pickle.loads(blob))
    return state


def _verify(path, index, name, data, dataset) -> None:
    if _digest(data) != dataset.attrs.get("sha256"):
        raise CheckpointError(f"{path}: call {index}: dataset {name!r} fails its checksum (corrupted file)")


def _plain(value):
    return value.item() if hasattr(value, "item") else value
