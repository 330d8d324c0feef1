"""HDF5 checkpoints: layout, atomic write, verified load.

One file holds every call of a Runtime, in call order (``/calls/0``,
``/calls/1``, ...), so a script with several phases resumes in the phase it was
in. A call's entry holds what a restart needs and nothing that could be
recomputed: finished results (``map``) or the completed blocks of the combine
tree (``map_reduce``), the root tasks not yet run as intervals, the spawned
tasks not yet run with their payloads, and failed tasks. Its size grows with
finished work, not with the total task count.

Python objects (results, payloads, tree keys) are pickled into uint8
datasets. Layout reference: docs/checkpoint-format.md.

Integrity: HDF5 does not defend itself against corrupt metadata (a flipped bit
can hang or crash the library), so no byte of a checkpoint reaches HDF5 before
it is verified. The file starts with a 512-byte HDF5 user block (HDF5 skips
it; h5py and h5dump read the file as usual) holding the SHA-256 of everything
after it; the reader reads the file once, checks that digest, and lets h5py
parse those verified bytes from memory. Inside, each dataset carries the
SHA-256 of its bytes and each call the SHA-256 of its attributes.

Crash consistency: a checkpoint is written to ``NAME.tmp-PID`` beside the
target, sealed (the digest written into its user block), flushed and fsynced,
then renamed over the target with ``os.replace`` (atomic on POSIX) and the
directory fsynced. A kill at any moment leaves either the previous checkpoint
or the new one, never a mix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle

from ..engine.cut import CallState
from ..errors import HpcmicroError, InvalidCall

__all__ = ["CheckpointError", "CallState", "write_checkpoint", "read_checkpoint", "job_identity",
           "check_writable", "is_checkpoint", "FORMAT"]

FORMAT = "hpcmicro-checkpoint"
FORMAT_VERSION = 4
# What each version changed; an older file is refused with these words (it cannot be read as a newer one).
FORMAT_CHANGES = {
    2: "a whole-file checksum header",
    3: "digests of the kernel's code",
    4: "map results stored as runs of tasks in pre-order (the depth-independent spawn path)",
}
HEADER_SIZE = 512  # the HDF5 user block: a power of two >= 512
MAGIC = FORMAT.encode() + b" "
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# Scalar fields of CallState, stored as HDF5 attributes of the call's group (str, int, float or bool).
ATTRIBUTES = tuple(f.name for f in dataclasses.fields(CallState)
                   if f.name not in ("index", "pending_roots", *CallState._PICKLED))


class CheckpointError(HpcmicroError):
    """A checkpoint file cannot be used: names the file and the problem."""


def job_identity(kind: str, kernel: str, tasks_digest: str, op: str | None, settings: dict | None = None) -> str:
    """A digest of what defines the job's result; the policy and rank count are not part of it."""
    text = repr((FORMAT_VERSION, kind, kernel, tasks_digest, op, sorted((settings or {}).items())))
    return hashlib.sha256(text.encode()).hexdigest()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _header(body_digest: str) -> bytes:
    """The user block: one text line naming the format and the SHA-256 of the rest of the file, zero-padded."""
    line = MAGIC + f"{FORMAT_VERSION} sha256={body_digest}\n".encode()
    return line.ljust(HEADER_SIZE, b"\0")


def _attrs_digest(state: CallState) -> str:
    return _digest(repr([(name, getattr(state, name)) for name in ("index", *ATTRIBUTES)]).encode())


def check_writable(path: str) -> None:
    """InvalidCall unless ``path``'s folder exists and takes a new file (a probe is written and removed)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        problem = "does not exist" if not os.path.exists(folder) else "is not a folder"
        raise InvalidCall(f"checkpoint {path}: its folder {folder} {problem}")
    if os.path.isdir(path):
        raise InvalidCall(f"checkpoint {path}: is a folder, not a file")
    probe = f"{path}.probe-{os.getpid()}"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"probe")
        os.unlink(probe)
    except OSError as exc:
        raise InvalidCall(f"checkpoint {path}: cannot write in its folder {folder}: "
                              f"{exc.strerror or type(exc).__name__}") from None


def write_checkpoint(path: str, calls: list[CallState], meta: dict | None = None) -> int:
    """Write every call's state to ``path`` atomically. Returns the file size in bytes."""
    import h5py  # here, not at the top: h5py and NumPy load only for a call that checkpoints
    import numpy as np

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with h5py.File(tmp, "w", userblock_size=HEADER_SIZE) as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            for key, value in (meta or {}).items():
                f.attrs[key] = value
            calls_group = f.create_group("calls")
            for state in calls:
                g = calls_group.create_group(str(state.index))
                for name in ATTRIBUTES:
                    value = getattr(state, name)
                    if not isinstance(value, (str, int, float, bool)):
                        raise TypeError(f"CallState.{name} = {value!r}: an attribute must be a str, int, float "
                                        f"or bool (or list the field in CallState._PICKLED)")
                    g.attrs[name] = value
                g.attrs["sha256"] = _attrs_digest(state)
                roots = np.asarray(state.pending_roots, dtype=np.int64).reshape(-1, 3)
                d = g.create_dataset("pending_roots", data=roots)
                d.attrs["sha256"] = _digest(roots.tobytes())
                for name in CallState._PICKLED:
                    blob = pickle.dumps(getattr(state, name), protocol=pickle.HIGHEST_PROTOCOL)
                    d = g.create_dataset(name, data=np.frombuffer(blob, dtype=np.uint8))
                    d.attrs["sha256"] = _digest(blob)
            f.flush()
        with open(tmp, "rb+") as fh:
            fh.seek(HEADER_SIZE)
            body = hashlib.sha256()
            while chunk := fh.read(1 << 20):
                body.update(chunk)
            fh.seek(0)
            fh.write(_header(body.hexdigest()))
            fh.flush()
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


def is_checkpoint(path: str) -> bool:
    """Whether ``path`` starts like a checkpoint of this format (reads its first bytes only; no HDF5)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _verified_bytes(path: str) -> bytes:
    """The file's bytes after its user block, once their digest matches; CheckpointError otherwise."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint: {exc.strerror or exc}") from None
    head, body = data[:HEADER_SIZE], data[HEADER_SIZE:]
    if not head.startswith(MAGIC):
        if head.startswith(HDF5_SIGNATURE):
            raise CheckpointError(f"{path}: not an hpcmicro checkpoint of format {FORMAT_VERSION} (an HDF5 file "
                                  f"without its checksum header: another file, or a checkpoint of hpcmicro "
                                  f"before format 2, which this version does not read)")
        raise CheckpointError(f"{path}: not an hpcmicro checkpoint (no checkpoint header: truncated, "
                              f"corrupted or another kind of file)")
    version = head[len(MAGIC):].split(b" ", 1)[0]
    if version != str(FORMAT_VERSION).encode():
        raise CheckpointError(f"{path}: checkpoint format version {version.decode(errors='replace')!r}, "
                              f"this hpcmicro reads {FORMAT_VERSION} (format {FORMAT_VERSION} added "
                              f"{FORMAT_CHANGES[FORMAT_VERSION]})")
    if head != _header(_digest(body)):
        raise CheckpointError(f"{path}: the file fails its whole-file checksum (corrupted or truncated)")
    return data


def read_checkpoint(path: str) -> tuple[dict, list[CallState]]:
    """Load and verify a checkpoint; raise CheckpointError naming the file and the problem.

    The whole file is checked against its digest before HDF5 sees a byte of it.
    """
    import h5py

    path = os.fspath(path)
    data = _verified_bytes(path)
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            if f.attrs.get("format") != FORMAT or f.attrs.get("format_version") != FORMAT_VERSION:
                raise CheckpointError(f"{path}: the checkpoint header and the HDF5 attributes disagree on "
                                      f"the format")
            meta = {k: _plain(v) for k, v in f.attrs.items()}
            group = f["calls"]
            calls = [_read_call(path, group[name], int(name)) for name in sorted(group, key=int)]
    except CheckpointError:
        raise
    except Exception as exc:  # a verified file that still fails: a bug in the writer, not a flipped bit
        raise CheckpointError(f"{path}: damaged checkpoint: {type(exc).__name__}: {exc}") from None
    return meta, calls


def _read_call(path, g, index) -> CallState:
    state = CallState(index=index, identity="", kind="", n_roots=0)
    for name in ATTRIBUTES:
        setattr(state, name, _plain(g.attrs[name]))
    if _attrs_digest(state) != g.attrs.get("sha256"):
        raise CheckpointError(f"{path}: call {index}: its attributes fail their checksum (corrupted file)")
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
