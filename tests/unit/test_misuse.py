"""Misusing a Runtime gets a clear error, never a hang (one rank; tests/multirank covers several)."""

import threading
import time

import pytest

import hpcmicro as hm


def test_use_after_close_is_refused():
    with hm.Runtime() as rt:
        assert rt.map(abs, [-1]) == [1]
    with pytest.raises(hm.InvalidCall, match="closed"):
        rt.map(abs, [-2])


def test_a_call_inside_a_kernel_is_a_task_error():
    with hm.Runtime() as rt:
        def nested(x):
            return rt.map(abs, [x])

        with pytest.raises(hm.TaskError) as info:
            rt.map(nested, [1, 2])
        assert "a call is already running on this Runtime" in info.value.remote_traceback
        assert rt.map(abs, [-3]) == [3]  # still usable


def test_a_second_thread_is_refused_while_a_call_runs():
    with hm.Runtime() as rt:
        started, errors = threading.Event(), []

        def slow(x):
            started.set()
            time.sleep(0.3)
            return x

        def other():
            started.wait(10)
            try:
                rt.map(abs, [1])
            except hm.InvalidCall as exc:
                errors.append(str(exc))

        t = threading.Thread(target=other)
        t.start()
        assert rt.map(slow, [1, 2]) == [1, 2]
        t.join(10)
        assert errors and "already running" in errors[0]
