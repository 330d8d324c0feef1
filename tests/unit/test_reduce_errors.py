"""A reduction op that fails on two results is a TaskError naming both tasks, and the runtime goes on."""

import numpy as np
import pytest

import hpcmicro as hm


def none_at_4(i):
    return None if i == 4 else i


def ragged(i):
    return np.ones(3 if i < 5 else 4)


def raising_op(a, b):
    if 6 in (a, b):
        raise ArithmeticError("no 6 allowed")
    return a + b


@pytest.mark.parametrize("kernel,op,exc_type", [(none_at_4, "sum", "TypeError"), (ragged, "sum", "ValueError"),
                                                (abs, raising_op, "ArithmeticError")])
def test_a_failing_combine_names_the_two_tasks(kernel, op, exc_type):
    with hm.Runtime() as rt:
        with pytest.raises(hm.TaskError) as info:
            rt.map_reduce(kernel, list(range(10)), op=op)
        err = info.value
        assert err.exc_type == exc_type
        assert "combining the results of task" in err.remote_traceback
        assert err.payload_repr.startswith("(the reduction of task")
        assert rt.map_reduce(abs, list(range(10))) == 45
