"""Programs for tests/futures: run as ``python -m hpcmicro.futures programs.py NAME`` (or plain python).

Rank 0 prints one JSON line ``{"rank": 0, ...}`` with what it saw; the test
compares it with a serial computation of its own.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from hpcmicro.futures import (
    ALL_COMPLETED, FIRST_COMPLETED, BrokenExecutor, DependencyError, MPICommExecutor, MPIPoolExecutor,
    TimeoutError, as_completed, get_comm_workers, wait,
)


def square(x):
    return x * x


def add(*xs):
    return sum(xs)


def total(items):
    return sum(items) if not isinstance(items, dict) else sum(items.values())


def boom(x):
    raise ValueError(f"boom on {x}")


def nap(seconds):
    time.sleep(seconds)
    return seconds


def where(seconds=0.0):
    from mpi4py import MPI

    time.sleep(seconds)
    return MPI.COMM_WORLD.Get_rank(), os.getpid()


def unpicklable_result():
    return threading.Lock()


_GREETING = {"value": None}


def set_greeting(text):
    _GREETING["value"] = text


def greeting():
    return _GREETING["value"]


def failing_initializer():
    raise RuntimeError("initializer failed on purpose")


def workers_allreduce(x):
    return get_comm_workers().allreduce(x)


def nap_or_preempt(i):
    if i == 10:
        import signal

        os.kill(os.getpid(), signal.SIGTERM)  # as the scheduler would: the pool drains and ends
    time.sleep(0.05)
    return i


def report(**fields):
    print(json.dumps({"rank": 0, **fields}), flush=True)


def basic():
    with MPIPoolExecutor() as ex:
        fs = [ex.submit(square, i) for i in range(500)]
        loop = [f.result() for f in fs]
        mapped = list(ex.map(square, range(200)))
        chunked = list(ex.map(add, range(100), range(100), chunksize=7))
        unordered = list(ex.map(square, range(50), unordered=True))
        star = list(ex.starmap(add, [(i, 1) for i in range(30)]))
        done_count = sum(1 for _ in as_completed([ex.submit(square, i) for i in range(40)]))
        first = wait([ex.submit(nap, 0.0), ex.submit(nap, 2.0)], return_when=FIRST_COMPLETED)
        everything = wait([ex.submit(square, i) for i in range(10)], return_when=ALL_COMPLETED)
        report(workers=ex.num_workers, loop=loop, mapped=mapped, chunked=chunked, unordered=unordered, star=star,
               as_completed=done_count, first_done=len(first.done), all_done=len(everything.done),
               all_not_done=len(everything.not_done))


def errors():
    out = {}
    with MPIPoolExecutor() as ex:
        err = ex.submit(boom, 3).exception()
        out["exc"] = [type(err).__name__, str(err), type(err.__cause__).__name__, "boom" in str(err.__cause__)]
        bad_arg = ex.submit(square, lambda: 1).exception()  # a lambda cannot be pickled
        out["bad_arg"] = type(bad_arg).__name__ if bad_arg is not None else None
        bad_result = ex.submit(unpicklable_result).exception()
        out["bad_result"] = str(bad_result.__cause__) if bad_result is not None else None
        try:
            list(ex.map(nap, [1.5], timeout=0.1))
            out["timeout"] = None
        except TimeoutError:
            out["timeout"] = "TimeoutError"
        try:
            ex.submit(42)
        except TypeError as exc:
            out["not_callable"] = str(exc)
        out["after_errors"] = ex.submit(square, 9).result()  # the pool lives on after failed tasks
    try:
        ex.submit(square, 1)
        out["after_shutdown"] = None
    except RuntimeError as exc:
        out["after_shutdown"] = str(exc)
    report(**out)


def dag():
    with MPIPoolExecutor() as ex:
        a = ex.submit(square, 3)
        b = ex.submit(square, 4)
        c = ex.submit(add, a, b)  # top-level futures
        d = ex.submit(total, [a, b, c, 1])  # futures in a list
        e = ex.submit(total, {"x": d, "y": c})  # futures in a dict
        chain = ex.submit(square, 1)
        for _ in range(20):
            chain = ex.submit(add, chain, 1)
        failed = ex.submit(boom, 7)
        dependent = ex.submit(add, failed, 1)
        second = ex.submit(add, dependent, 1)  # fails too, naming its own failed input
        slow = ex.submit(nap, 1.0)
        held = ex.submit(add, slow, 1)
        cancelled = held.cancel()  # still waiting for its input: cancellable
        after_cancel = ex.submit(add, held, 1)
        dep_error = dependent.exception()
        report(c=c.result(), d=d.result(), e=e.result(), chain=chain.result(),
               dependent=[type(dep_error).__name__, str(dep_error), type(dep_error.__cause__).__name__],
               second=type(second.exception()).__name__, cancelled=cancelled,
               after_cancel=after_cancel.cancelled(), slow=slow.result(),
               dependency_error_is_exception=isinstance(dep_error, DependencyError))


def initializer():
    with MPIPoolExecutor(initializer=set_greeting, initargs=("hello",)) as ex:
        greetings = [ex.submit(greeting).result() for _ in range(6)]
    broken = MPIPoolExecutor(initializer=failing_initializer)
    first = broken.submit(square, 2).exception()
    time.sleep(0.1)
    try:
        broken.submit(square, 3)
        later = None
    except BrokenExecutor as exc:
        later = type(exc).__name__
    broken.shutdown()
    report(greetings=greetings, first=type(first).__name__ if first is not None else None, later=later)


def balance():
    with MPIPoolExecutor() as ex:
        places = [f.result() for f in [ex.submit(where, 0.02) for _ in range(40)]]
        report(workers=ex.num_workers, ranks=sorted({r for r, _ in places}), pids=len({p for _, p in places}))


def comm_workers():
    with MPIPoolExecutor() as ex:
        n = ex.num_workers
        sums = [f.result() for f in [ex.submit(workers_allreduce, 1) for _ in range(n)]]
        report(workers=n, sums=sums)


def comm_executor():
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    root = comm.Get_size() - 1
    got = None
    with MPICommExecutor(comm, root=root) as ex:
        if ex is not None:
            got = [list(ex.map(square, range(20))), ex.num_workers, [f.result() for f in
                                                                     [ex.submit(add, ex.submit(square, 2), 1)]]]
    everyone = comm.gather((comm.Get_rank(), got), root=0)
    if comm.Get_rank() == 0:
        report(seen=everyone, root=root)


def marked_square(folder, i):
    """Square i, leaving a file behind for each execution (the test counts them)."""
    with open(os.path.join(folder, f"ran-{i}-{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass
    if i == 25 and not os.path.exists(os.path.join(folder, "preempted-once")):
        import signal

        open(os.path.join(folder, "preempted-once"), "w").close()
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.03)
    return i * i


def flaky(folder, i):
    """Fails the first two times it runs for a given i (counted by files in folder)."""
    tries = len([n for n in os.listdir(folder) if n.startswith(f"try-{i}-")])
    open(os.path.join(folder, f"try-{i}-{tries}"), "w").close()
    if tries < 2:
        raise OSError(f"transient failure {tries} of task {i}")
    return i


def retried():
    folder = sys.argv[2]
    with MPIPoolExecutor(retries=2) as ex:
        ok = [f.result() for f in [ex.submit(flaky, folder, i) for i in range(5)]]
    with MPIPoolExecutor(retries=1) as ex:
        exc = ex.submit(flaky, folder, 99).exception()
    report(ok=ok, short=[type(exc).__name__, str(exc)])


def checkpointed():
    folder = sys.argv[2]
    with MPIPoolExecutor(checkpoint=os.path.join(folder, "results")) as ex:
        squares = [ex.submit(marked_square, folder, i) for i in range(60)]
        sums = [ex.submit(add, squares[i], squares[i + 1]) for i in range(59)]
        report(squares=[f.result() for f in squares], sums=[f.result() for f in sums])


def preempt():
    with MPIPoolExecutor() as ex:
        fs = [ex.submit(nap_or_preempt, i) for i in range(400)]
        for f in fs:
            f.result()  # raises Preempted (a SystemExit with code 75) once the pool has drained
    report(never=True)


BLOCK = 64 * 1024  # float64s: 512 KiB a block, kept on its worker above the 128 KiB threshold set below


def make_block(seed):
    import numpy as np

    return np.random.default_rng(seed).standard_normal(BLOCK)


def blocks_sum(*blocks):
    total = 0.0
    for b in blocks:
        b[0] = b[0]  # a writable copy, as a value fetched from another rank is (raises if it were read-only)
        total += float(b.sum())
    return total


def listed_sum(items):
    return blocks_sum(*[x for x in items if not isinstance(x, float)]) + sum(x for x in items if isinstance(x, float))


def kept_values():
    """Large results kept on their workers: dependents fetch them worker to worker, rank 0 only when asked."""
    import gc

    from mpi4py import MPI

    from hpcmicro.futures import _values

    _values.KEEP_BYTES = 128 * 1024
    comm = MPI.COMM_WORLD
    out: dict = {}
    with MPICommExecutor(comm, root=0) as ex:
        if ex is not None:
            pool = ex._pool()
            blocks = [ex.submit(make_block, s) for s in range(8)]
            pairs = [ex.submit(blocks_sum, blocks[i], blocks[(i + 1) % 8]) for i in range(8)]
            listed = ex.submit(listed_sum, [blocks[0], blocks[3], 5.0])
            out["pairs"] = [f.result() for f in pairs]
            out["listed"] = listed.result()
            out["fetched_sum"] = float(blocks[2].result().sum())  # fetched to rank 0 on demand
            out["kept_type"] = type(blocks[4]._result).__name__  # still on its worker: nobody asked
            last = blocks[5]  # kept past the block: fetched at shutdown, so that result() still works
            del blocks, pairs, listed
            gc.collect()
            out["after_free"] = ex.submit(square, 3).result()  # frees of the gone futures go out with it
    if comm.Get_rank() == 0:
        out["last_sum"] = float(last.result().sum())
        out["root"] = dict(pool.values.stats)
        out["workers"] = pool.worker_values
        report(**out)


def hang_once(folder, i):
    """Task 3's first attempt hangs for 4 s; any later attempt (on another worker) returns at once."""
    marker = os.path.join(folder, f"hung-{i}")
    if i == 3 and not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(4.0)
        return -1  # a late result: must be discarded
    return i * 10


def timed_out():
    """Tasks under a task_timeout of 0.5 s (set by the launcher, or on the executor in one process)."""
    folder = sys.argv[2]
    kwargs = {} if "--shared" in sys.argv else {"task_timeout": 0.5, "max_workers": 2}
    t = time.monotonic()
    with MPIPoolExecutor(**kwargs) as ex:
        values = [f.result() for f in [ex.submit(hang_once, folder, i) for i in range(8)]]
        seconds = time.monotonic() - t
        after = ex.submit(square, 5).result()  # the pool goes on with the workers left
    try:
        MPIPoolExecutor(task_timeout=0)
        bad = None
    except ValueError as exc:
        bad = str(exc)
    report(values=values, seconds=seconds, after=after, bad=bad)


if __name__ == "__main__":
    globals()[sys.argv[1]]()
