"""Shared pieces of the benchmark scripts: kernels, timing, output.

Kernels live here (not in the scripts) so that every system runs the very same
function: hpcmicro ranks and MPIPoolExecutor workers both unpickle them as
``benchmarks.common.<name>``, which needs the repository root on ``sys.path``
(``run_all.py`` sets PYTHONPATH; the scripts add it for rank 0 themselves).

Each measurement is one JSON object on one line of stdout, written by the rank
that measured (rank 0 / the executor's master); ``run_all.py`` collects them.
"""

from __future__ import annotations

import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_now = time.perf_counter


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
    try:
        from mpi4py import MPI

        out["mpi_library"] = " ".join(MPI.Get_library_version().splitlines()[0].split())
    except Exception:  # pragma: no cover - informational only
        pass
    return out
