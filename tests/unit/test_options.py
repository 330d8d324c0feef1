"""Options: every out-of-range value is an InvalidCall naming the option (issue 10, item 11 and 13)."""

import io

import pytest

from hpcmicro.errors import InvalidCall
from hpcmicro.observe.progress import Progress
from hpcmicro.options import Options


@pytest.mark.parametrize("name", ["capacity", "checkpoint_every", "task_timeout", "preempt_grace", "progress_every"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_numbers_are_refused(name, value):
    with pytest.raises(InvalidCall, match=f"^{name} must be a (finite|positive) number"):
        Options(**{name: value})


def test_runtime_capacity_inf_is_invalid_call():
    import hpcmicro as hm

    with pytest.raises(InvalidCall, match="capacity must be a finite number"):
        hm.Runtime(capacity=float("inf"))


def test_trace_in_a_missing_folder_is_refused(tmp_path):
    path = tmp_path / "nosuchdir" / "t.json"
    with pytest.raises(InvalidCall, match=f"trace {path}: folder {path.parent} does not exist"):
        Options(trace=path)
    with pytest.raises(InvalidCall, match="is a folder"):
        Options(trace=tmp_path)
    assert Options(trace=tmp_path / "t.json").trace == str(tmp_path / "t.json")


@pytest.mark.parametrize("name", ["trace", "checkpoint"])
def test_path_options_must_be_paths(name):
    with pytest.raises(InvalidCall, match=f"^{name} must be a path"):
        Options(**{name: 3})
    with pytest.raises(InvalidCall, match=f"^{name} must be a non-empty path"):
        Options(**{name: ""})


@pytest.mark.parametrize("ended, word", [("ok", "done in"), ("failed", "failed after"),
                                         ("preempted", "preempted after")])
def test_progress_final_line_says_how_the_call_ended(ended, word):
    stream = io.StringIO()
    progress = Progress("lines", every=0.0, stream=stream)
    progress.finish(3, 10, ended=ended)
    assert "3/10 tasks (30%)" in stream.getvalue() and word in stream.getvalue()
    if ended != "ok":
        assert "done in" not in stream.getvalue()


def test_progress_refuses_an_unknown_ending():
    with pytest.raises(ValueError, match="ended must be one of"):
        Progress("lines", stream=io.StringIO()).finish(1, 1, ended="weird")
