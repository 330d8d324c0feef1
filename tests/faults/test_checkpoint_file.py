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
                      segments=[((0,), list(range(gen % 7 * 20000)))],
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
        try:
            proc.stdout.readline()  # one generation written: start-up (slow on a loaded machine) is over
            time.sleep(0.011 * trial)  # then most of the writer's time is spent writing
        finally:
            proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        if not path.exists():
            continue
        _, calls = read_checkpoint(path)  # must never raise
        (state,) = calls
        gen = int(state.identity)
        # The file holds one whole generation: its parts agree with each other.
        assert state.pending_roots == [(gen, 1000, 0)]
        assert state.segments == [((0,), list(range(gen % 7 * 20000)))]
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
    with pytest.raises(CheckpointError, match="whole-file checksum"):
        read_checkpoint(path)
    reseal(path)  # the dataset's own checksum still catches it
    with pytest.raises(CheckpointError, match="'pending_spawned' fails its checksum"):
        read_checkpoint(path)


def test_foreign_files_are_refused(tmp_path):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5 at all" * 100)
    with pytest.raises(CheckpointError, match="not an hpcmicro checkpoint"):
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


def test_a_checkpoint_of_an_older_format_is_refused_naming_both_versions(tmp_path):
    from hpcmicro.io.checkpoint import FORMAT_VERSION, write_checkpoint

    path = tmp_path / "old.h5"
    write_checkpoint(path, [])
    data = bytearray(path.read_bytes())
    marker = f"{FORMAT_VERSION} sha256=".encode()
    at = data.index(marker)
    old = str(FORMAT_VERSION - 1).encode()
    data[at:at + len(old)] = old  # what the previous release wrote: the same header, the version before
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"format version '{FORMAT_VERSION - 1}', this hpcmicro reads "
                                              f"{FORMAT_VERSION}"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="resume=False"):
        hm.Runtime(checkpoint=path).open()
    with hm.Runtime(checkpoint=path, resume=False) as rt:
        assert rt.map(square, [3]) == [9]


# -- integrity: attributes, the whole file, old formats -------------------------------------------------

def flip_bit(path, offset, bit=0):
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(data)


def reseal(path):
    """Recompute the whole-file digest after an edit, as a careful forger would: the inner checksums remain."""
    from hpcmicro.io.checkpoint import HEADER_SIZE, _digest, _header

    body = path.read_bytes()[HEADER_SIZE:]
    path.write_bytes(_header(_digest(body)) + body)


EDITS = {"complete": True, "kind": "map", "n_roots": 11, "identity": "abd", "created": 1, "finished": 1}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_a_changed_call_attribute_is_refused(tmp_path, name):
    path = tmp_path / "ck.h5"
    write_checkpoint(path, [sample_state()])
    with h5py.File(path, "r+") as f:
        f["calls/0"].attrs[name] = EDITS[name]
    with pytest.raises(CheckpointError, match="whole-file checksum"):
        read_checkpoint(path)
    reseal(path)  # the call's own checksum still catches it
    with pytest.raises(CheckpointError, match="call 0: its attributes fail their checksum"):
        read_checkpoint(path)


def test_a_flipped_bit_is_refused_before_hdf5_reads_the_file(tmp_path, monkeypatch):
    path = tmp_path / "ck.h5"
    write_checkpoint(path, [sample_state()])
    good = path.read_bytes()
    opened = []
    real_file = h5py.File
    monkeypatch.setattr(h5py, "File", lambda *a, **k: opened.append(a) or real_file(*a, **k))
    for offset in (0, 100, 511, 512, 600, 1500, len(good) // 2, len(good) - 1):
        path.write_bytes(good)
        flip_bit(path, offset, offset % 8)
        with pytest.raises(CheckpointError, match=f"{path}: "):
            read_checkpoint(path)
    assert opened == []  # HDF5 never parsed a damaged byte
    path.write_bytes(good + b"\0")  # appended bytes too
    with pytest.raises(CheckpointError, match="whole-file checksum"):
        read_checkpoint(path)


def test_a_checkpoint_of_the_previous_format_is_refused_with_a_way_out(tmp_path):
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:  # format 1: no checksum header
        f.attrs["format"], f.attrs["format_version"] = "hpcmicro-checkpoint", 1
        f.create_group("calls")
    with pytest.raises(CheckpointError, match="before format 2"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match=f"{path}.*resume=False"):
        hm.Runtime(checkpoint=path).open()


def test_inspect_refuses_a_damaged_checkpoint_with_one_line(tmp_path, capsys):
    from hpcmicro.app.cli import main

    path = tmp_path / "ck.h5"
    write_checkpoint(path, [sample_state()])
    assert main(["inspect", str(path)]) == 0
    assert "checkpoint with 1 call(s)" in capsys.readouterr().out
    flip_bit(path, 600)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "whole-file checksum" in err and len(err.splitlines()) == 1, err
    assert main(["report", str(path)]) == 2
    assert "whole-file checksum" in capsys.readouterr().err


# -- the checkpoint's folder, and writes that fail --------------------------------------------------------

def folder_problems(tmp_path):
    (tmp_path / "afile").write_text("x")
    cases = [(tmp_path / "nosuchdir" / "c.h5", "does not exist"), (tmp_path / "afile" / "c.h5", "is not a folder"),
             (tmp_path, "is a folder, not a file")]
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        cases.append((ro / "c.h5", "cannot write in its folder"))
    return cases


def test_a_checkpoint_folder_that_cannot_be_written_is_refused_at_open(tmp_path):
    for path, problem in folder_problems(tmp_path):
        with pytest.raises(hm.InvalidCall, match=f"checkpoint {path}: .*{problem}"):
            hm.Runtime(checkpoint=path).open()
    assert not [p for p in os.listdir(tmp_path) if ".probe-" in p]


def test_the_cli_refuses_a_checkpoint_in_a_missing_folder_with_exit_2(tmp_path):
    from tests.mpirun import ROOT, run_command

    spec = tmp_path / "job.toml"
    (tmp_path / "k.py").write_text("def one(i):\n    return 1\n")
    spec.write_text('[job]\nname = "t"\nkernel = "k:one"\nop = "sum"\noutput = "out.h5"\n[tasks]\nrange = { n = 10 }\n')
    run = run_command([sys.executable, "-m", "hpcmicro", "run", str(spec), "--checkpoint",
                       str(tmp_path / "nosuchdir" / "c.h5")], timeout=60, cwd=ROOT)
    assert run.returncode == 2, str(run)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuchdir" in lines[0] and "does not exist" in lines[0], str(run)


def slow(i):
    time.sleep(0.002)
    return i


def test_a_failing_background_write_is_reported_and_ends_the_call_with_a_checkpoint_error(tmp_path, caplog):
    import shutil

    folder = tmp_path / "gone"
    folder.mkdir()
    path = folder / "run.h5"
    with hm.Runtime(checkpoint=path, checkpoint_every=0.02) as rt:
        shutil.rmtree(folder)  # after the check at open: the periodic writes fail
        with pytest.raises(CheckpointError, match=f"{path}: cannot write the checkpoint"):
            rt.map(slow, list(range(200)))
    assert any(f"{path}: cannot write the checkpoint" in r.getMessage() for r in caplog.records)
