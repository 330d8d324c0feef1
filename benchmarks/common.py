"""Shared pieces of the benchmark scripts: kernels, timing, output.

Kernels live here (not in the scripts) so that every system runs the very same
function: hpcmicro ranks, MPIPoolExecutor workers and Dask workers all unpickle
them as ``benchmarks.common.<name>``, which needs the repository root on
``sys.path`` (``run_all.py`` sets PYTHONPATH, which Dask's worker processes
inherit; the scripts add it for rank 0 themselves).

Each measurement is one JSON object on one line of stdout, written by the rank
that measured (rank 0 / the executor's master / the Dask client);
``run_all.py`` collects them.
"""

from __future__ import annotations

import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_now = time.perf_counter

# What a benchmark compares: hpcmicro under each of its policies (hpcmicro.constants.POLICY_NAMES;
# the default first), then the baselines. A unit test keeps the policies in step.
HPCMICRO_SYSTEMS = ("steal", "static")
SYSTEMS = HPCMICRO_SYSTEMS + ("executor", "dask")

# The per-worker statistics a record keeps (of CallStats.workers).
WORKER_FIELDS = ("tasks", "busy_s", "idle_s", "wall_s", "steals_received", "requests")


def ensure_repo_on_path() -> None:
    if REPO not in sys.path:
        sys.path.insert(0, REPO)


def emit(record: dict) -> None:
    """One measurement: a JSON line on stdout, flushed at once."""
    import hpcmicro

    record.setdefault("hpcmicro_file", hpcmicro.__file__)  # which copy of the runtime was measured
    sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
    sys.stdout.flush()


def parse_chunksizes(text: str) -> list[int]:
    return [int(c) for c in text.split(",") if c.strip()]


# --------------------------------------------------------------------------------------
# Kernels (module level: picklable by reference).


def noop(x=None):
    """The no-op microtask: same function for every system."""
    return None


def noop_chunk(items) -> list:
    """A batch of no-ops (Dask's batched variant): the list of ``noop`` results."""
    return [noop(x) for x in items]


def noop_chunk_pickled(items) -> bytes:
    """``noop_chunk``, its result list pickled into one ``bytes`` (undone on the client).

    Dask serializes a list result element by element; one bytes object avoids
    that, the way MPI-based systems pickle a chunk's results in one go.
    """
    import pickle

    return pickle.dumps([noop(x) for x in items], protocol=pickle.HIGHEST_PROTOCOL)


def timed_spin(seconds: float) -> float:
    """Busy-wait ``seconds`` (hpcmicro.kernels.synthetic.spin), return the elapsed wall time."""
    from hpcmicro.kernels.synthetic import spin

    t0 = _now()
    spin(seconds)
    return _now() - t0


def timed_row(params, y: int) -> tuple:
    """One Mandelbrot row (hpcmicro.kernels.mandelbrot.row_kernel).

    Returns ``(sum of the row's escape counts, elapsed seconds)``: the checksum
    lets run_all check that every system computed the same image, and the
    elapsed time feeds the ideal makespan. The row itself is not shipped back
    (2 KB a row would add only transfer time, the same for every system).
    """
    from hpcmicro.kernels.mandelbrot import row_kernel

    t0 = _now()
    row = row_kernel(params, y)
    dt = _now() - t0
    return int(row.sum()), dt


def uts_children(params, node) -> list:
    """The children of one UTS node: the executor's BFS step (it cannot spawn)."""
    from hpcmicro.kernels.uts import children

    return children(params, node)


def jittered_value(i: int) -> float:
    """``order_sensitive_value(i)`` after 0 to 0.4 ms of busy work (a fixed function of ``i``).

    The reduction benchmark's task: tasks of slightly different lengths, as
    real tasks are, so that results arrive out of index order. (With
    identical microsecond tasks handed out in order, arrival order stays
    close to index order and hides the question.)
    """
    from hpcmicro.kernels.synthetic import order_sensitive_value, spin

    spin(((i * 2654435761) % 5) * 1e-4)
    return order_sensitive_value(i)


def timed_sleep(seconds: float) -> float:
    """Sleep ``seconds`` (hpcmicro.kernels.synthetic.sleep_task), return the elapsed wall time.

    For the scaling runs (e): a sleeping task uses no CPU, so 16 processes on
    2 cores still measure scheduling and not CPU contention.
    """
    from hpcmicro.kernels.synthetic import sleep_task

    t0 = _now()
    sleep_task(seconds)
    return _now() - t0


def uts_count_dask(params, node) -> int:
    """Dask's UTS task: visit ``node``, submit one task per child from inside the task, return the subtree size.

    The pattern Dask documents for tasks that launch tasks
    (``distributed.worker_client``: the task secedes from the worker's thread
    pool while it waits for its children, and rejoins afterwards).
    """
    from hpcmicro.kernels.uts import children

    kids = children(params, node)
    if not kids:
        return 1
    from distributed import worker_client

    with worker_client() as client:
        futures = client.map(uts_count_dask, [params] * len(kids), kids, pure=False)
        return 1 + sum(client.gather(futures))


# --------------------------------------------------------------------------------------
# Dask


class dask_client:
    """``with dask_client(workers) as client``: a fresh LocalCluster of ``workers`` processes.

    ``LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)``:
    one single-threaded worker process per hpcmicro worker rank. The scheduler
    runs in this (the client's) process, LocalCluster's default; no dashboard.
    """

    def __init__(self, workers: int):
        self.workers = workers

    def __enter__(self):
        import logging

        from distributed import Client, LocalCluster

        self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                    dashboard_address=None, silence_logs=logging.ERROR)
        self.client = Client(self.cluster)
        self.client.wait_for_workers(self.workers)
        return self.client

    def __exit__(self, *exc):
        self.client.close()
        self.cluster.close()
        return False


# --------------------------------------------------------------------------------------
# Facts about the run, recorded with every measurement.


def versions() -> dict:
    import mpi4py
    import numpy

    import hpcmicro

    out = {
        "python": sys.version.split()[0],
        "mpi4py": mpi4py.__version__,
        "numpy": numpy.__version__,
        "hpcmicro": hpcmicro.__version__,
    }
    for name in ("dask", "distributed", "matplotlib"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # pragma: no cover - informational only
            out[name] = "not installed"
    try:
        from mpi4py import MPI

        out["mpi_library"] = " ".join(MPI.Get_library_version().splitlines()[0].split())
    except Exception:  # pragma: no cover - informational only
        pass
    return out


def dispatch(args, run_hpcmicro, run_executor, run_dask) -> None:
    """Run the measurement of the system ``--system`` names (steal and static are hpcmicro)."""
    {"dask": run_dask, "executor": run_executor}.get(args.system, run_hpcmicro)(args)
