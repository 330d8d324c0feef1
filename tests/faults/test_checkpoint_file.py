"""The checkpoint file: atomic under SIGKILL, verified on load, refused when foreign."""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import hpcmicro as hm
from hpcmicro.io.checkpoint import CallState, CheckpointError, read_checkpoint, write_checkpoint

WRITER = """
import sys, itertools
from hpcmicro.io.checkpoint import CallState, write_checkpoint
path = sys.argv[1]
for gen in itertools.count():
    state = CallState(index=0, identity=str(gen), kind="map", n_roots=1000,
                      root_segments=[[0, list(range(gen % 7 * 20000))]],
                      pending_roots=[(gen, 1000, 0)])
    write_checkpoint(path, [state])
    print(gen, flush=True)
"""


def test_sigkill_while_writing_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "ck.h5"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    seen_generations = set()
    for trial in range(12):
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
        time.sleep(0.25 + 0.037 * trial)  # most of the writer's time is spent writing
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        if not path.exists():
            continue
        _, calls = read_checkpoint(path)  # must never raise
        (state,) = calls
        gen = int(state.identity)
        # The file holds one whole generation: its parts agree with each other.
        assert state.pending_roots == [(gen, 1000, 0)]
        assert state.root_segments == [[0, list(range(gen % 7 * 20000))]]
        seen_generations.add(gen)
    assert len(seen_generations) >= 3
    leftovers = [p for p in os.listdir(tmp_path) if ".tmp-" in p]
    # A killed writer may leave its temp file; it never replaces a good checkpoint.
    assert all(p.startswith("ck.h5.tmp-") for p in leftovers)


def sample_state():
    return CallState(index=0, identity="abc", kind="map_reduce", n_roots=10,
                     blocks={((), 1, 0): np.arange(3.0)}, lengths={(2,): 3},
                     pending_roots=[(4, 10, 0)], pending_spawned=[((2, 1), "payload", 0)])


def test_roundtrip(tmp_path):
    path = tmp_path / "ck.h5"
    write_checkpoint(path, [sample_state()])
    _, (state,) = read_checkpoint(path)
    assert state.pending_roots == [(4, 10, 0)] and state.pending_spawned == [((2, 1), "payload", 0)]
    np.testing.assert_array_equal(state.blocks[((), 1, 0)], np.arange(3.0))


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "ck.h5"
    write_checkpoint(path, [sample_state()])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{path}: "):
        read_checkpoint(path)


def test_corrupted_dataset_fails_its_checksum(tmp_path):
    path = tmp_path / "ck.h5"
    write_checkpoint(path, [sample_state()])
    with h5py.File(path, "r+") as f:
        d = f["calls/0/pending_spawned"]
        raw = d[()]
        raw[len(raw) // 2] ^= 0xFF
        d[...] = raw
    with pytest.raises(CheckpointError, match="'pending_spawned' fails its checksum"):
        read_checkpoint(path)


def test_foreign_files_are_refused(tmp_path):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5 at all" * 100)
    with pytest.raises(CheckpointError, match="not a readable HDF5 file"):
        read_checkpoint(garbage)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(CheckpointError, match="not an hpcmicro checkpoint"):
        read_checkpoint(other)


def square(x):
    return x * x


def cube(x):
    return x ** 3


def test_runtime_refuses_a_checkpoint_of_another_job_and_fresh_starts_over(tmp_path):
    path = tmp_path / "run.h5"
    with hm.Runtime(checkpoint=path) as rt:
        assert rt.map_reduce(square, list(range(10))) == 285
    with hm.Runtime(checkpoint=path) as rt:  # same job: the result comes from the checkpoint
        assert rt.map_reduce(square, list(range(10))) == 285
        assert rt.stats.restored
    with hm.Runtime(checkpoint=path) as rt:
        with pytest.raises(CheckpointError, match="call 0 in the checkpoint belongs to a different job"):
            rt.map_reduce(cube, list(range(10)))
    with hm.Runtime(checkpoint=path, resume=False) as rt:
        assert rt.map_reduce(cube, list(range(10))) == 2025
        assert not rt.stats.restored


def test_runtime_names_a_damaged_checkpoint(tmp_path):
    path = tmp_path / "run.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 50)
    with pytest.raises(CheckpointError, match=f"{path}.*resume=False"):
        hm.Runtime(checkpoint=path).open()
    with hm.Runtime(checkpoint=path, resume=False) as rt:
        assert rt.map(square, [3]) == [9]
