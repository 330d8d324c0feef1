"""The results of finished tasks on disk, so that a rerun of a killed program does not compute them again.

A folder of HDF5 *segments*: every ``every`` seconds (and when the pool ends,
preempted or not) the results that finished since the last segment are
written to a new file, ``seg-NNNNNN.h5``, under a temporary name, flushed to
disk and renamed into place, so that a segment is either whole or absent.
A segment holds, for its n results:

- ``ids``: n x 32 bytes, the tasks' identities (``identity``);
- ``offsets``: n + 1 int64, where each result's bytes start in ``data``;
- ``data``: uint8, the results pickled as the worker pickled them;
- attributes ``format`` (``FORMAT``) and ``sha256`` (of ids, offsets and data).

A task's identity is a SHA-256 of its function's code (``codehash``: the
bytecode, constants, globals it reads, ...) and of its pickled arguments, in
which each input future is replaced by that input's identity: a dependent is
the same task again exactly when it runs the same code on the same inputs.
A rerun submits the same calls; each whose identity is stored resolves at once
from disk, without a task. What finished in the last ``every`` seconds before
a kill (SIGKILL, a node failure) is computed again; a preemption
(SIGTERM/SIGUSR1) writes everything finished first.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
from pathlib import Path

from ..codehash import code_parts
from ..io.checkpoint import CheckpointError

__all__ = ["ResultStore", "identity"]

FORMAT = "hpcmicro.futures-results/1"
DEPENDENCY = "hpcmicro.futures dependency"  # marks an input's identity among the pickled arguments

_code_cache: dict = {}


def identity(fn, args, kwargs, input_ids: dict) -> bytes:
    """The task's identity; ``input_ids`` maps ``id(future)`` to the identity of each input future."""
    try:
        code = _code_cache[fn]
    except (KeyError, TypeError):
        code = repr(sorted(code_parts("task", fn).items())).encode()
        try:
            _code_cache[fn] = code
        except TypeError:  # unhashable callable: digest it every time
            pass
    h = hashlib.sha256(code)
    h.update(pickle.dumps((_mark(args, input_ids), _mark(kwargs, input_ids)), protocol=4))
    return h.digest()


def _mark(value, input_ids):
    if id(value) in input_ids:
        return (DEPENDENCY, input_ids[id(value)])
    if isinstance(value, list):
        return [_mark(v, input_ids) for v in value]
    if isinstance(value, tuple):
        return tuple(_mark(v, input_ids) for v in value)
    if isinstance(value, dict):
        return {k: _mark(v, input_ids) for k, v in value.items()}
    return value


class ResultStore:
    def __init__(self, folder, every: float = 1.0):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckpointError(f"checkpoint folder {self.folder}: {exc}") from None
        if not os.access(self.folder, os.W_OK):
            raise CheckpointError(f"checkpoint folder {self.folder} is not writable")
        self.every = every
        self._stored: dict[bytes, bytes] = {}
        self._new: list = []  # (identity, blob) finished since the last segment
        self._lock = threading.Lock()
        self._segments = 0
        for path in sorted(self.folder.glob("seg-*.h5")):
            self._read(path)
            self._segments += 1
        self.reused = 0  # results served from disk in this run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._flush_every, name="hpcmicro-futures-store", daemon=True)
        self._thread.start()

    def __len__(self):
        return len(self._stored)

    def get(self, key: bytes) -> bytes | None:
        blob = self._stored.get(key)
        if blob is not None:
            self.reused += 1
        return blob

    def add(self, key: bytes, blob: bytes) -> None:
        with self._lock:
            if key not in self._stored:
                self._stored[key] = blob
                self._new.append((key, blob))

    def flush(self) -> None:
        """Write what finished since the last segment as a new segment (atomic: tmp file, fsync, rename)."""
        with self._lock:
            new, self._new = self._new, []
            if not new:
                return
            self._segments += 1
            path = self.folder / f"seg-{self._segments:06d}.h5"
        import h5py  # h5py (and NumPy) load only for an executor that keeps results
        import numpy as np

        ids = np.frombuffer(b"".join(k for k, _ in new), np.uint8).reshape(len(new), 32)
        sizes = np.array([len(b) for _, b in new], np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        data = np.frombuffer(b"".join(b for _, b in new), np.uint8)
        tmp = path.with_suffix(".tmp")
        with h5py.File(tmp, "w") as f:
            f.create_dataset("ids", data=ids)
            f.create_dataset("offsets", data=offsets)
            f.create_dataset("data", data=data)
            f.attrs["format"] = FORMAT
            f.attrs["sha256"] = _digest(ids, offsets, data)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.flush()

    def _flush_every(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001  (said at once; the final flush raises it)
                import sys

                sys.stderr.write(f"hpcmicro.futures: writing results to {self.folder} failed: {exc}\n")

    def _read(self, path: Path) -> None:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                if f.attrs.get("format") != FORMAT:
                    raise CheckpointError(f"{path}: not a hpcmicro.futures results segment "
                                          f"(format {f.attrs.get('format')!r}, expected {FORMAT!r})")
                ids, offsets, data = f["ids"][()], f["offsets"][()], f["data"][()]
                digest = f.attrs.get("sha256")
        except CheckpointError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"{path}: unreadable results segment ({type(exc).__name__}: {exc}); "
                                  f"remove it to compute its tasks again") from None
        if digest != _digest(ids, offsets, data):
            raise CheckpointError(f"{path}: its contents do not match its checksum (damaged); remove it to compute "
                                  f"its tasks again")
        raw = data.tobytes()
        for k in range(len(ids)):
            self._stored[ids[k].tobytes()] = raw[offsets[k]:offsets[k + 1]]


def _digest(ids, offsets, data) -> str:
    import numpy as np

    h = hashlib.sha256()
    for a in (ids, offsets, data):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()
