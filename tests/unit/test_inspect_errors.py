"""``hpcmicro inspect`` on files that are damaged, foreign or missing: one line, exit 2, never a traceback.

Also: the readers of ``hpcmicro.io.results`` look at a file's first bytes before
h5py parses it (a checkpoint is never parsed before its SHA-256 is checked), and
the command parses unverifiable files in a child process, because one flipped
bit in a result file's metadata can crash HDF5 or send it into an endless loop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from hpcmicro.app import cli
from hpcmicro.constants import EXIT_BAD_INPUT
from hpcmicro.io import results
from hpcmicro.io.results import ResultAttrs, file_kind, read_result, write_result
from tests.mpirun import ROOT, run_command


@pytest.fixture(scope="module")
def real_files(tmp_path_factory):
    """A result file and a checkpoint written by a real ``hpcmicro run``."""
    folder = tmp_path_factory.mktemp("real")
    out, ck = folder / "pi.h5", folder / "ck.h5"
    run = subprocess.run([sys.executable, "-m", "hpcmicro", "run", str(ROOT / "jobs" / "pi.toml"),
                          "--set", "tasks.range.n=10", "--set", "job.args.samples=1000", "--progress", "off",
                          "--output", str(out), "--checkpoint", str(ck)],
                         capture_output=True, text=True, timeout=120, cwd=folder)
    assert run.returncode == 0, run.stderr
    return out, ck


def inspect(path, capsys) -> tuple[int, str, str]:
    status = cli.main(["inspect", str(path)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line(status, out, err, path, *words):
    assert status == EXIT_BAD_INPUT, (status, out, err)
    assert out == ""
    assert err.startswith(f"hpcmicro: error: {path}: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)


def write(path, data: bytes):
    path.write_bytes(data)
    return path


# -- hpcmicro inspect: one line, exit 2 -------------------------------------------------------------


def test_real_files_are_described(real_files, capsys):
    out_file, ck = real_files
    status, out, _ = inspect(out_file, capsys)
    assert status == 0 and "job pi" in out and "/result" in out
    status, out, _ = inspect(ck, capsys)
    assert status == 0 and "checkpoint with 1 call(s)" in out


@pytest.mark.parametrize("keep", [0.5, 0.04, 100 / 13_000])
def test_truncated_checkpoint(real_files, tmp_path, capsys, keep):
    data = real_files[1].read_bytes()
    path = write(tmp_path / "ck.h5", data[:max(1, int(len(data) * keep))])
    assert_one_line(*inspect(path, capsys), path, "checkpoint")


def test_truncated_result_file(real_files, tmp_path, capsys):
    data = real_files[0].read_bytes()
    for n in (len(data) // 2, 700, 8, 3):
        path = write(tmp_path / f"r{n}.h5", data[:n])
        assert_one_line(*inspect(path, capsys), path)


def test_random_bytes_and_an_empty_file(tmp_path, capsys):
    path = write(tmp_path / "random.h5", np.random.default_rng(0).bytes(5000))
    assert_one_line(*inspect(path, capsys), path, "not an HDF5 file")
    path = write(tmp_path / "empty.h5", b"")
    assert_one_line(*inspect(path, capsys), path, "empty")


def test_hdf5_files_of_another_program(tmp_path, capsys):
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(3)
    assert_one_line(*inspect(plain, capsys), plain, "neither an hpcmicro result file")
    # A 'stats' attribute of the wrong kind: before, a TypeError traceback out of json.loads.
    for value in (5, "not json", "[1, 2]"):
        odd = tmp_path / "odd.h5"
        with h5py.File(odd, "w") as f:
            f.attrs["stats"] = value
            f["result"] = 1
        assert_one_line(*inspect(odd, capsys), odd, "stats")
    # An HDF5 file behind a 512-byte user block that is no checkpoint header.
    blocked = tmp_path / "blocked.h5"
    with h5py.File(blocked, "w", userblock_size=512) as f:
        f["x"] = 1
    assert_one_line(*inspect(blocked, capsys), blocked, "not a checkpoint header")


def test_missing_path_and_a_folder(tmp_path, capsys):
    missing = tmp_path / "nope.h5"
    assert_one_line(*inspect(missing, capsys), missing, "No such file or directory")
    folder = tmp_path / "adir"
    folder.mkdir()
    # Before, HDF5's message for a folder ran over two lines (it carries a timestamp and a newline).
    assert_one_line(*inspect(folder, capsys), folder, "Is a directory")


def test_report_refuses_the_same_files_the_same_way(tmp_path, capsys):
    folder = tmp_path / "adir"
    folder.mkdir()
    odd = tmp_path / "odd.h5"
    with h5py.File(odd, "w") as f:
        f.attrs["stats"] = 5
    for path in (folder, odd, write(tmp_path / "random.h5", b"\0" * 100)):
        status = cli.main(["report", str(path)])
        err = capsys.readouterr().err
        assert status == EXIT_BAD_INPUT and err.count("\n") == 1 and "Traceback" not in err, err


# -- file_kind and read_result look before h5py parses -----------------------------------------------


@pytest.fixture
def h5py_spy(monkeypatch):
    """h5py.File that fails the test when asked to open a path in ``forbidden``."""
    opened, forbidden = [], set()
    real = h5py.File

    def spy(name, *args, **kwargs):
        opened.append(os.fspath(name))
        if os.fspath(name) in forbidden:
            raise AssertionError(f"h5py was asked to parse {name} before it was verified")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", spy)
    return opened, forbidden


def flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 1 << (offset % 8)
    return bytes(out)


def test_checkpoints_are_told_by_their_header_without_hdf5(real_files, tmp_path, h5py_spy):
    opened, forbidden = h5py_spy
    data = real_files[1].read_bytes()
    cases = {"good": data, "flipped": flip(data, 600), "truncated": data[:len(data) // 2],
             "header only": data[:512]}
    for name, content in cases.items():
        path = write(tmp_path / f"{name}.h5", content)
        forbidden.add(str(path))
        assert file_kind(path) == "checkpoint", name
        with pytest.raises(ValueError, match="a checkpoint, not a result file"):
            read_result(path)
    assert not set(opened) & forbidden


def test_a_checkpoint_with_a_damaged_header_never_reaches_hdf5(real_files, tmp_path, h5py_spy):
    opened, forbidden = h5py_spy
    path = write(tmp_path / "ck.h5", flip(real_files[1].read_bytes(), 3))  # "hpcmicro-checkpoint" broken
    forbidden.add(str(path))
    for reader in (file_kind, read_result):
        with pytest.raises(ValueError, match="not a checkpoint header"):
            reader(path)
    assert str(path) not in opened


def test_bytes_that_are_no_sound_hdf5_file_never_reach_hdf5(real_files, tmp_path, h5py_spy):
    opened, forbidden = h5py_spy
    good = real_files[0].read_bytes()
    bad_version = bytearray(good)
    bad_version[8] = 7
    past_end = bytearray(good)
    past_end[40:48] = (len(good) * 4).to_bytes(8, "little")  # superblock v0: the end-of-file address
    root_outside = bytearray(good)
    root_outside[64:72] = (1 << 40).to_bytes(8, "little")  # v0: the root object header's address
    cases = {"random": np.random.default_rng(1).bytes(3000), "empty": b"", "signature only": good[:8],
             "half": good[:len(good) // 2], "superblock v7": bytes(bad_version), "end past the file": bytes(past_end),
             "root outside": bytes(root_outside)}
    for name, content in cases.items():
        path = write(tmp_path / f"{name}.h5", content)
        forbidden.add(str(path))
        for reader in (file_kind, read_result):
            with pytest.raises(OSError, match="not an HDF5 file|damaged HDF5 file"):
                reader(path)
    for missing in (tmp_path / "nope.h5", tmp_path):
        forbidden.add(str(missing))
        with pytest.raises(OSError):
            file_kind(missing)
    assert not set(opened) & forbidden


def test_sound_files_still_read(real_files, tmp_path):
    for libver in ("earliest", "v108", "v110", "latest"):  # superblock versions 0, 2, 3, 3
        path = tmp_path / f"{libver}.h5"
        with h5py.File(path, "w", libver=libver) as f:
            f["x"] = 1
        assert results.sniff(path) == "hdf5"
    assert file_kind(real_files[0]) == "result" and read_result(real_files[0]).value > 0
    for legacy in ("result-0.1.0-pi.h5", "result-0.1.0-map-pickle.h5"):
        assert file_kind(ROOT / "tests" / "data" / legacy) == "result"


# -- a result file whose metadata makes HDF5 crash or hang ----------------------------------------------

STATS = {"kind": "map_reduce", "policy": "steal", "ranks": 2, "tasks": 10, "wall_s": 0.5, "steals": 0,
         "steals_brokered": 0, "master_messages": 2, "efficiency": 0.9, "master_messages_per_s": 4.0,
         "workers": [{"rank": 1, "tasks": 10, "busy_s": 0.45, "idle_s": 0.05, "wall_s": 0.5, "comm_s": 0.0,
                      "utilization": 0.9, "steals_received": 0, "tasks_given": 0, "bytes_in": 0, "bytes_out": 0}],
         "failed": [], "restored": False, "queue_samples": [], "decisions": {},
         "task_time": {"count": 10, "mean": 0.045, "min": 0.04, "p50": 0.045, "p95": 0.05, "max": 0.05}}

# Offsets of a bit flip (bit offset % 8) in the file below that made HDF5 2.0.0 (h5py 3.16) segfault (937,
# 6201) or loop for ever (4153) while `hpcmicro inspect` read it in-process: the layout depends only on the
# attributes' lengths, which are those of a small run of jobs/pi.toml. Another HDF5 may cope with some of
# them; every one must still end in a described file or one error line, promptly.
CRASHING_OFFSETS = (937, 4153, 6201)
SLOW = os.environ.get("HPCMICRO_SLOW") == "1"
RUN_INSPECT = ("import sys; import hpcmicro.app.cli as cli; cli.READ_TIMEOUT_S = 3.0; "
               "sys.exit(cli.main(['inspect', sys.argv[1]]))")


def deterministic_result(path):
    """The same bytes every time (fixed attributes and creation time)."""
    pad = 891 - len(json.dumps({**STATS, "pad": ""}))
    stats = {**STATS, "pad": "x" * pad}  # 891 characters of JSON
    attrs = ResultAttrs(call="map_reduce", policy="steal", ranks=1, wall_s=0.5, stats=stats, spec="#" * 799,
                        job="pi", kernel="pi_kernel:hits", args={"samples": 1000, "seed": 0}, op="sum",
                        tasks_source="range", tasks_value={"n": 10, "chunk": 1},
                        created="2026-12-03T13:15:50+00:00", version="0.1.0")
    write_result(path, 7961, attrs)
    return path.read_bytes()


# Each offset costs two Python start-ups (about 1 s on 2 loaded cores): the slow set samples every
# 97th byte of the 6,600 (68 offsets), the quick set two, both plus the offsets that once crashed HDF5.
@pytest.mark.parametrize("offset", CRASHING_OFFSETS + ((tuple(range(0, 6600, 97))) if SLOW else (100, 3000)))
def test_a_flipped_bit_in_a_result_file_never_crashes_or_hangs_inspect(tmp_path, offset):
    data = deterministic_result(tmp_path / "good.h5")
    assert len(data) == 6600 and offset < len(data)
    path = write(tmp_path / "flipped.h5", flip(data, offset))
    # In a child process of its own, so that a crash or a hang fails this test instead of pytest.
    run = run_command([sys.executable, "-c", RUN_INSPECT, str(path)], timeout=60)
    assert run.returncode in (0, EXIT_BAD_INPUT), str(run)
    assert "Traceback" not in run.stderr, str(run)
    if run.returncode:
        assert run.stderr.startswith(f"hpcmicro: error: {path}: ") and run.stderr.count("\n") == 1, str(run)
