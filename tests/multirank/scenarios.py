"""Multi-rank scenarios. Run as ``mpiexec -n N python scenarios.py NAME JSON_PARAMS``.

Every rank runs the scenario; ranks that have something to say print one JSON
line tagged with their rank. Any exception that escapes aborts the whole MPI
job (Runtime's abort_on_error), so a broken scenario fails fast instead of
hanging; the tests add a timeout on top.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
import os
import sys
import time

import numpy as np

import hpcmicro as hm
from hpcmicro.kernels import synthetic, uts


def emit(rank, **fields):
    print(json.dumps({"rank": rank, **fields}), flush=True)


# -- kernels (module level: every rank has them, nothing is pickled) -----------------

def square_sum(r):
    return sum(x * x for x in r)


def square(x):
    return x * x


def fp_value(r):
    # Order-sensitive float: the sum of these depends on the combine order.
    return sum(synthetic.order_sensitive_value(i) for i in r)


def fp_array(r):
    i = r.start
    return np.array([synthetic.order_sensitive_value(i + k) for k in range(5)]) * (1.0 + i % 7)


def tree_node(payload):
    """A small deterministic spawn tree: node (v, depth) has v % 3 children."""
    v, depth = payload
    if depth < 4:
        for k in range(v % 3):
            hm.context().spawn((v * 7 + k + 1, depth + 1))
    return f"{v}.{depth};"


def tree_serial(roots):
    out = []

    def visit(p):
        v, depth = p
        out.append(f"{v}.{depth};")
        if depth < 4:
            for k in range(v % 3):
                visit((v * 7 + k + 1, depth + 1))

    for p in roots:
        visit(p)
    return out


def sleep_for(seconds):
    time.sleep(seconds)
    return seconds


def fail_on(bad, x):
    if x == bad:
        raise ValueError(f"bad input {x}")
    return x


def matmul2(a, b):
    return tuple(tuple(sum(a[i][k] * b[k][j] for k in range(2)) for j in range(2)) for i in range(2))


def small_matrix(i):
    return ((1, i % 5), (i % 3, 1))


# -- scenarios ------------------------------------------------------------------------

def serial_equal(p):
    n = p.get("n", 500)
    with hm.Runtime(policy=p["policy"]) as rt:
        squares = rt.map(square, list(range(n)))
        total = rt.map_reduce(square_sum, hm.Range(n, 7))
        prio = rt.map(square, [hm.Task(i, priority=i % 3) for i in range(n)])
        roots = [(i, 0) for i in range(30)]
        tree = rt.map(tree_node, roots)
        concat = rt.map_reduce(tree_node, roots, op=operator.add)
        blocks = rt.map(lambda s: (s[0].start, s[1].stop), hm.Blocks((10, 13), (3, 4)))
        ok = {
            "map": squares == [i * i for i in range(n)],
            "map_reduce": total == sum(i * i for i in range(n)),
            "priority_map": prio == [i * i for i in range(n)],
            "tree_map": tree == tree_serial(roots),
            "tree_concat": concat == "".join(tree_serial(roots)),
            "blocks": blocks == [(s[0].start, s[1].stop) for s in hm.Blocks((10, 13), (3, 4))],
        }
        emit(rt.rank, ok=ok, size=rt.size, tree_tasks=rt.stats.tasks, backend=rt.backend is not None)


def fp_reduce(p):
    n = p.get("n", 3000)
    with hm.Runtime(policy=p["policy"]) as rt:
        total = rt.map_reduce(fp_value, hm.Range(n, 3))
        arr = rt.map_reduce(fp_array, hm.Range(n, 3))
        amin = rt.map_reduce(fp_array, hm.Range(n, 3), op="min")
        emit(rt.rank, total=float(total).hex(), fsum=__import__("math").fsum(
            synthetic.order_sensitive_value(i) for i in range(n)),
            array=hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest(),
            array_shape=list(arr.shape), amin=hashlib.sha256(amin.tobytes()).hexdigest())


def skewed(p):
    n, slow, fast, n_slow = p["n"], p["slow"], p["fast"], p["n_slow"]
    durations = [slow if i < n_slow else fast for i in range(n)]
    with hm.Runtime(policy=p["policy"]) as rt:
        out = rt.map_reduce(sleep_for, durations, op="sum")
        s = rt.stats
        if rt.rank == 0:
            emit(0, total=out, wall=s.wall_s, busy=s.busy_s, workers=s.workers, steals=s.steals,
                 ideal=sum(durations) / len(s.workers))


def tree_search(p):
    params = uts.PRESETS[p["preset"]] if isinstance(uts.PRESETS, dict) else getattr(uts, p["preset"])
    with hm.Runtime(policy=p["policy"]) as rt:
        count = rt.map_reduce(functools.partial(uts.count_kernel, params), [uts.root(params)])
        if rt.rank == 0:
            emit(0, count=count, serial=uts.serial_count(params), steals=rt.stats.steals,
                 per_worker=[w["tasks"] for w in rt.stats.workers])


def kernel_error(p):
    with hm.Runtime(policy=p["policy"]) as rt:
        try:
            rt.map(functools.partial(fail_on, p["bad"]), list(range(p["n"])))
            emit(rt.rank, raised=None)
        except hm.TaskError as exc:
            emit(rt.rank, raised="TaskError", task_id=list(exc.task_id), worker=exc.rank,
                 host=exc.host, payload=exc.payload_repr, traceback=exc.remote_traceback)
        # The runtime must still work after an aborted call (no stray messages).
        after = rt.map_reduce(square, list(range(100)))
        emit(rt.rank, after=after)


def unpicklable(i):
    return i


BAD_INPUTS = {
    "unpicklable": lambda rt: rt.map(unpicklable, [1, 2, lambda: 3, 4]),
    "unknown_op": lambda rt: rt.map_reduce(square, [1, 2], op="average"),
    "bad_root": lambda rt: rt.map(square, [1, 2], root=99),
    "not_iterable": lambda rt: rt.map(square, 42),
    "not_callable": lambda rt: rt.map("square", [1, 2]),
    "empty_reduce": lambda rt: rt.map_reduce(square, []),
    # Rank-dependent calls: the ranks disagree on what they called.
    "disagree_kernel": lambda rt: rt.map(square if rt.rank % 2 else square_sum, hm.Range(10)),
    "disagree_call": lambda rt: (rt.map if rt.rank else rt.map_reduce)(square, [1, 2]),
    "disagree_tasks": lambda rt: rt.map(square_sum, hm.Range(10 + (rt.rank == 1))),
    "disagree_op": lambda rt: rt.map_reduce(square, [1, 2], op="sum" if rt.rank else "max"),
}


def bad_input(p):
    with hm.Runtime(policy=p.get("policy", "steal")) as rt:
        try:
            BAD_INPUTS[p["case"]](rt)
            emit(rt.rank, raised=None)
        except hm.InvalidCall as exc:
            emit(rt.rank, raised=type(exc).__name__, message=str(exc))
        after = rt.map_reduce(square, list(range(10)))
        emit(rt.rank, after=after)


def noncommutative(p):
    n = p.get("n", 200)
    with hm.Runtime(policy=p["policy"]) as rt:
        prod = rt.map_reduce(small_matrix, list(range(n)), op=matmul2)
        expected = functools.reduce(matmul2, [small_matrix(i) for i in range(n)])
        emit(rt.rank, ok=prod == expected)


def root_option(p):
    with hm.Runtime() as rt:
        target = rt.size - 1
        m = rt.map(square, list(range(50)), root=target)
        r = rt.map_reduce(square, list(range(50)), root=target)
        arr = rt.map_reduce(fp_array, hm.Range(30, 2), root=target)
        emit(rt.rank, has_map=m is not None, has_reduce=r is not None, has_array=arr is not None,
             map_ok=(m == [i * i for i in range(50)]) if m is not None else None,
             reduce_ok=(r == sum(i * i for i in range(50))) if r is not None else None)


SCENARIOS = {f.__name__: f for f in (serial_equal, fp_reduce, skewed, tree_search, kernel_error,
                                      bad_input, noncommutative, root_option)}



# -- fault tolerance -------------------------------------------------------------------

def slow_value(i):
    """An order-sensitive value that takes a little while (a few ms)."""
    time.sleep(0.002 + 0.004 * ((i * 7919) % 5 == 0))
    return synthetic.order_sensitive_value(i)


def slow_tree(payload):
    """A spawn tree with slow nodes; its value is order-sensitive."""
    v, depth = payload
    time.sleep(0.002)
    if depth < 3:
        for k in range(v % 4):
            hm.context().spawn((v * 5 + k + 1, depth + 1))
    return synthetic.order_sensitive_value(v)


def checkpointed(p):
    """Two phases, each checkpointed; prints the results (hex) when both complete."""
    n = p.get("n", 400)
    with hm.Runtime(policy=p.get("policy", "steal"), checkpoint=p.get("checkpoint"),
                    checkpoint_every=p.get("every", 0.1)) as rt:
        if p.get("pid_dir"):
            import os
            with open(os.path.join(p["pid_dir"], f"rank{rt.rank}.pid"), "w") as fh:
                fh.write(str(os.getpid()))
        phase1 = rt.map_reduce(slow_value, list(range(n)))
        phase2 = rt.map(slow_tree, [(i, 0) for i in range(p.get("roots", 40))])
        tree_sum = rt.map_reduce(slow_tree, [(i, 0) for i in range(p.get("roots", 40))])
        emit(rt.rank, phase1=float(phase1).hex(), phase2=hashlib.sha256(repr(phase2).encode()).hexdigest(),
             n2=len(phase2), tree=float(tree_sum).hex(), restored=rt.stats.restored)


SCENARIOS["checkpointed"] = checkpointed



_attempts = {}


def flaky(fail_times, i):
    """Fails the first ``fail_times`` tries of every 5th task (counted in this process)."""
    if i % 5 == 0:
        _attempts[i] = _attempts.get(i, 0) + 1
        if _attempts[i] <= fail_times:
            raise RuntimeError(f"transient failure of {i}, try {_attempts[i]}")
    return i * i


def broken(i):
    if i % 7 == 3:
        raise ValueError(f"task {i} always fails")
    return float(i)


def retry_and_skip(p):
    n = 60
    with hm.Runtime(policy=p["policy"], retries=p["retries"], on_error=p.get("on_error", "raise")) as rt:
        out = {}
        try:
            out["map"] = rt.map(functools.partial(flaky, p["fail_times"]), list(range(n)))
        except hm.TaskError as exc:
            out["error"] = {"task_id": list(exc.task_id), "text": str(exc)}
        if p.get("on_error") == "skip":
            out["skip_map"] = rt.map(broken, list(range(n)))
            out["skip_failed"] = sorted(list(t) for t, _ in rt.stats.failed)
            out["skip_tb"] = all("always fails" in tb for _, tb in rt.stats.failed)
            out["skip_sum"] = rt.map_reduce(broken, list(range(n)))
        out["retries"] = sum(w.get("retries", 0) for w in (rt.stats.workers if rt.stats else []))
        emit(rt.rank, **out)


def hang_once(marker_dir, seconds, i):
    """Task 5 hangs on the first rank that runs it; elsewhere it is quick."""
    if i == 5:
        import os
        try:
            os.close(os.open(os.path.join(marker_dir, "hung"), os.O_CREAT | os.O_EXCL))
            time.sleep(seconds)
        except FileExistsError:
            pass
    time.sleep(0.01)
    return synthetic.order_sensitive_value(i)


def hung_task(p):
    n = 40
    kernel = functools.partial(hang_once, p["marker_dir"], p["hang"])
    with hm.Runtime(policy=p.get("policy", "steal"), task_timeout=p["task_timeout"]) as rt:
        t0 = time.perf_counter()
        total = rt.map_reduce(kernel, list(range(n)))
        wall = time.perf_counter() - t0
        hung = [w["hung"] for w in rt.stats.workers]
        tasks_run = sum(w["tasks"] for w in rt.stats.workers)
        # The same reduction again, with no hang: the fault must not change a bit.
        check = rt.map_reduce(functools.partial(hang_once, p["marker_dir"], 0), list(range(n)))
        listed = rt.map(functools.partial(hang_once, p["marker_dir"], 0), list(range(n)))
        emit(rt.rank, total=float(total).hex(), check=float(check).hex(), wall=wall, hung=hung,
             tasks_run=tasks_run, map_ok=listed == [synthetic.order_sensitive_value(i) for i in range(n)])


SCENARIOS["retry_and_skip"] = retry_and_skip
SCENARIOS["hung_task"] = hung_task



def die_once(marker_dir, victim, after, i, wait_for=None):
    """Rank ``victim`` kills itself (SIGKILL) the first time it runs a task past ``after``
    (and, given ``wait_for``, once that file exists: a checkpoint to restart from)."""
    import os
    import signal

    if i >= after and hm.context().rank == victim:
        deadline = time.monotonic() + 30
        while wait_for is not None and not os.path.exists(wait_for) and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            os.close(os.open(os.path.join(marker_dir, "died"), os.O_CREAT | os.O_EXCL))
            os.kill(os.getpid(), signal.SIGKILL)
        except FileExistsError:
            pass
    return slow_value(i)


def lose_worker(p):
    """A worker dies in the middle of the first call; the survivors finish both calls exactly."""
    n = p.get("n", 300)
    kernel = functools.partial(die_once, p["marker_dir"], p["victim"], p.get("after", 120),
                               wait_for=p.get("checkpoint"))
    with hm.Runtime(policy=p.get("policy", "steal"), checkpoint_every=p.get("every", 0.2),
                    checkpoint=p.get("checkpoint")) as rt:
        size0, layout0 = rt.size, rt.layout
        total = rt.map_reduce(kernel, list(range(n)))
        listed = rt.map(slow_tree, [(i, 0) for i in range(20)])
        emit(rt.rank, total=float(total).hex(), listed=hashlib.sha256(repr(listed).encode()).hexdigest(),
             size_before=size0, size_after=rt.size, ulfm=rt._ulfm, layout_before=layout0, layout_after=rt.layout)


SCENARIOS["lose_worker"] = lose_worker


def lose_worker_in_second_call(p):
    """Call 1 completes with snapshots; a worker dies at once in call 2, before call 2 has a cut of its own.

    Call 2 must start again from its own beginning, never from call 1's last cut.
    """
    n = p.get("n", 200)
    with hm.Runtime(policy=p.get("policy", "steal"), checkpoint_every=p.get("every", 0.05)) as rt:
        size0 = rt.size
        first = rt.map_reduce(slow_value, list(range(n)))
        kernel = functools.partial(die_once, p["marker_dir"], p["victim"], 0)
        second = rt.map_reduce(kernel, list(range(n, 2 * n)))
        emit(rt.rank, first=float(first).hex(), second=float(second).hex(), size_before=size0,
             size_after=rt.size, ulfm=rt._ulfm)


SCENARIOS["lose_worker_in_second_call"] = lose_worker_in_second_call


# -- misuse and errors during rounds ----------------------------------------------------

def expect_task_error(rt, call) -> None:
    """Run ``call(rt)``, report the TaskError it raises (or that none did), then show the runtime still works."""
    try:
        call(rt)
        emit(rt.rank, raised=None)
    except hm.TaskError as exc:
        emit(rt.rank, raised="TaskError", task_id=list(exc.task_id), exc_type=exc.exc_type,
             traceback=exc.remote_traceback)
    emit(rt.rank, after=rt.map_reduce(square, list(range(10))))


_RUNTIME = None  # the scenario's Runtime, for a kernel that (wrongly) calls back into it


def call_back(x):
    return _RUNTIME.map(square, [x])


def nested_call(p):
    """A kernel calls rt.map: a TaskError on every rank, and the runtime still works."""
    global _RUNTIME
    with hm.Runtime(policy=p.get("policy", "steal")) as rt:
        _RUNTIME = rt
        expect_task_error(rt, lambda rt: rt.map(call_back, list(range(6))))


def fail_late(bad, i):
    time.sleep(0.0005)
    if i == bad:
        raise ValueError(f"task {i} always fails")
    return i


def error_in_checkpoint_round(p):
    """A kernel error (after its retry) while checkpoint rounds run every 50 ms: TaskError, no hang."""
    with hm.Runtime(policy=p.get("policy", "steal"), retries=1, checkpoint=p["checkpoint"],
                    checkpoint_every=0.05) as rt:
        expect_task_error(rt, lambda rt: rt.map(functools.partial(fail_late, 5), list(range(800))))


def exit_on(bad, x):
    if x == bad:
        sys.exit(3)  # in a kernel: that task's failure, not the job's exit
    return x


def kernel_exit(p):
    with hm.Runtime(policy=p.get("policy", "steal")) as rt:
        expect_task_error(rt, lambda rt: rt.map(functools.partial(exit_on, 7), list(range(40))))


def none_at_4(i):
    return None if i == 4 else i


def bad_reduction(p):
    with hm.Runtime(policy=p.get("policy", "steal")) as rt:
        expect_task_error(rt, lambda rt: rt.map_reduce(none_at_4, list(range(40))))


def lock_at_3(i):
    import threading

    return threading.Lock() if i == 3 else i


def unpicklable_result(p):
    with hm.Runtime(policy=p.get("policy", "steal")) as rt:
        expect_task_error(rt, lambda rt: rt.map(lock_at_3, list(range(20))))


def final_write_fails(p):
    """The checkpoint's folder vanishes during the call: the write at its end fails on the master."""
    import shutil

    folder = p["folder"]
    with hm.Runtime(checkpoint=os.path.join(folder, "run.h5"), checkpoint_every=3600) as rt:
        if rt.rank == 0:
            shutil.rmtree(folder)  # after the check at open
        try:
            rt.map(square, list(range(50)))
            emit(rt.rank, raised=None)
        except hm.CheckpointError as exc:
            emit(rt.rank, raised=type(exc).__name__, message=str(exc))


SCENARIOS["final_write_fails"] = final_write_fails
SCENARIOS["unpicklable_result"] = unpicklable_result
SCENARIOS["bad_reduction"] = bad_reduction
SCENARIOS["kernel_exit"] = kernel_exit
SCENARIOS["nested_call"] = nested_call
SCENARIOS["error_in_checkpoint_round"] = error_in_checkpoint_round


if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
