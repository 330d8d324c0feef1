"""hpcmicro.io.results: the result file of ``hpcmicro run``, written and read by one module.

Files written by hpcmicro 0.1.0 (tests/data/result-0.1.0-*.h5, made by ``hpcmicro run``
before this module existed) must still read, and new files must have their layout.
"""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import hpcmicro
from hpcmicro.io.results import ResultAttrs, file_kind, read_result, write_result

DATA = Path(__file__).resolve().parents[1] / "data"
LEGACY_PI = DATA / "result-0.1.0-pi.h5"  # jobs/pi.toml with range n=8 chunk=2, samples=1000, 1 rank
LEGACY_MAP = DATA / "result-0.1.0-map-pickle.h5"  # a map over [3, "a", 5] of {"x": x, "twice": str(x) * 2}


def attrs(**changes):
    base = dict(call="map_reduce", policy="steal", ranks=3, wall_s=0.25, stats={"kind": "map_reduce", "tasks": 4},
                spec="[job]\nkernel = 'k:f'\n", job="demo", kernel="k:f", args={"n": 2}, op="sum",
                tasks_source="range", tasks_value={"n": 4, "chunk": 1}, trace="/tmp/demo.trace.json")
    base.update(changes)
    return ResultAttrs(**base)


def test_reads_a_map_reduce_file_of_hpcmicro_0_1_0():
    result = read_result(LEGACY_PI)
    assert result.encoding == "native" and int(result.value) == 6369
    a = result.attrs
    assert (a.job, a.kernel, a.call, a.op, a.policy, a.ranks, a.version) == (
        "pi", "pi_kernel:hits", "map_reduce", "sum", "steal", 1, "0.1.0")
    assert (a.tasks_source, a.tasks_value, a.tasks) == ("range", {"n": 8, "chunk": 2}, 'range {"n": 8, "chunk": 2}')
    assert a.args == {"samples": 1000, "seed": 0} and a.trace is None
    assert a.stats["kind"] == "map_reduce" and a.stats["tasks"] == 4 and a.wall_s == a.stats["wall_s"] > 0
    assert "range = { n = 8, chunk = 2 }" in a.spec and a.created.endswith("+00:00")
    assert [(d.name, d.shape, d.dtype, d.encoding) for d in result.datasets] == [("/result", (), "int64", "native")]


def test_reads_a_pickled_map_file_of_hpcmicro_0_1_0():
    result = read_result(LEGACY_MAP)
    assert result.encoding == "pickle"
    assert result.value == [{"x": 3, "twice": "33"}, {"x": "a", "twice": "aa"}, {"x": 5, "twice": "55"}]
    assert result.attrs.call == "map" and result.attrs.op is None
    assert (result.attrs.tasks_source, result.attrs.tasks_value) == ("list", [3, "a", 5])
    assert result.attrs.trace == "/tmp/legacy/rec.trace.json"


def test_new_files_have_the_0_1_0_layout(tmp_path):
    """Same attribute names and kinds, same dataset, as a file hpcmicro 0.1.0 wrote."""
    path = tmp_path / "new.h5"
    write_result(path, 6369, attrs(ranks=1, trace=None))
    with h5py.File(LEGACY_PI, "r") as old, h5py.File(path, "r") as new:
        assert set(new.attrs) == set(old.attrs)
        for key in old.attrs:
            assert type(new.attrs[key]) is type(old.attrs[key]), key
        assert new["result"].dtype == old["result"].dtype and new["result"].shape == old["result"].shape
        assert new["result"].attrs["encoding"] == "native"
        assert new.attrs["trace"] == "" and new.attrs["hpcmicro_version"] == hpcmicro.__version__
        assert new.attrs["tasks"] == 'range {"n": 4, "chunk": 1}' and json.loads(new.attrs["args"]) == {"n": 2}


@pytest.mark.parametrize("call, value", [
    ("map_reduce", 42),
    ("map_reduce", np.arange(6.0).reshape(2, 3)),
    ("map_reduce", {"a": [1, 2]}),
    ("map", [1, 2, 3]),
    ("map", [np.ones(2), np.ones(3)]),
    ("map", [1, "x", None]),
    ("map", []),
])
def test_write_then_read_gives_back_value_and_attributes(tmp_path, call, value):
    path = tmp_path / "r.h5"
    written = attrs(call=call, op="sum" if call == "map_reduce" else None)
    write_result(path, value, written)
    result = read_result(path)
    assert result.attrs == written
    if isinstance(value, list) and any(isinstance(v, np.ndarray) for v in value):
        assert len(result.value) == len(value)
        for got, expected in zip(result.value, value):
            np.testing.assert_array_equal(got, expected)
    elif result.encoding == "native":
        np.testing.assert_array_equal(result.value, np.asarray(value))
    else:
        assert result.value == value


def test_value_false_reads_only_the_description(tmp_path):
    path = tmp_path / "r.h5"
    write_result(path, [np.zeros(4), np.ones(4)], attrs(call="map", op=None))
    with h5py.File(path, "a") as f:  # what a finalize hook may add
        f["image"] = np.zeros((3, 5), np.int32)
    result = read_result(path, value=False)
    assert result.value is None and result.encoding == "native"
    assert [(d.name, d.shape, d.dtype, d.encoding) for d in result.datasets] == [
        ("/image", (3, 5), "int32", None), ("/result", (2, 4), "float64", "native")]


def test_file_kind(tmp_path):
    assert file_kind(LEGACY_PI) == "result"
    from hpcmicro.io.checkpoint import FORMAT

    with h5py.File(tmp_path / "ck.h5", "w") as f:
        f.attrs["format"] = FORMAT
    assert file_kind(tmp_path / "ck.h5") == "checkpoint"
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["a"] = 1
    with pytest.raises(ValueError, match="neither an hpcmicro result file"):
        file_kind(tmp_path / "other.h5")
    with pytest.raises(ValueError, match="not an hpcmicro result file"):
        read_result(tmp_path / "other.h5")


def test_unknown_call_is_refused_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="call must be one of map, map_reduce"):
        write_result(tmp_path / "r.h5", 1, attrs(call="reduce"))
    assert not list(tmp_path.iterdir())
