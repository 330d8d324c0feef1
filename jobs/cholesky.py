"""A tiled Cholesky factorization as a DAG of hpcmicro.futures tasks, checked against numpy.linalg.cholesky.

    mpiexec -n 5 python -m hpcmicro.futures jobs/cholesky.py --n 2048 --tile 256
    python jobs/cholesky.py --n 512 --tile 128          # one process: worker threads

The matrix (symmetric positive definite, from ``--seed``) is cut into T x T
tiles of ``--tile`` rows; each tile operation is one task whose arguments
are the futures of the tiles it reads, so a task starts as soon as its own
inputs are done (right-looking, per step k)::

    L[k,k] = potrf(A[k,k])
    L[i,k] = trsm(L[k,k], A[i,k])               i > k
    A[i,j] = A[i,j] - L[i,k] @ L[j,k].T         k < j <= i   (syrk when i == j, gemm otherwise)

It prints one JSON line: sizes, tasks, seconds, the relative error against
``numpy.linalg.cholesky`` of the same matrix, and the critical path (the
longest chain of tasks, 3T - 2 of them). Exit status 1 if the error exceeds 1e-10.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def spd_matrix(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((n, n))
    return m @ m.T + n * np.eye(n)


def potrf(a):
    return np.linalg.cholesky(a)


def trsm(l_kk, a_ik):
    # L[i,k] = A[i,k] L[k,k]^-T, i.e. solve L[k,k] X^T = A[i,k]^T
    return np.linalg.solve(l_kk, a_ik.T).T


def update(a_ij, l_ik, l_jk):
    return a_ij - l_ik @ l_jk.T


def tiles_of(a: np.ndarray, b: int) -> dict:
    t = a.shape[0] // b
    return {(i, j): np.ascontiguousarray(a[i * b:(i + 1) * b, j * b:(j + 1) * b])
            for i in range(t) for j in range(i + 1)}


def factor(submit, tiles: dict, t: int) -> tuple[dict, int]:
    """Submit the DAG; ``submit(fn, *args)`` returns a future. Returns (futures of L's tiles, tasks)."""
    tile, tasks = dict(tiles), 0
    for k in range(t):
        tile[k, k] = submit(potrf, tile[k, k])
        tasks += 1
        for i in range(k + 1, t):
            tile[i, k] = submit(trsm, tile[k, k], tile[i, k])
            tasks += 1
        for i in range(k + 1, t):
            for j in range(k + 1, i + 1):
                tile[i, j] = submit(update, tile[i, j], tile[i, k], tile[j, k])
                tasks += 1
    return tile, tasks


def assemble(values: dict, t: int, b: int) -> np.ndarray:
    out = np.zeros((t * b, t * b))
    for (i, j), v in values.items():
        out[i * b:(i + 1) * b, j * b:(j + 1) * b] = v
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024, help="matrix order (a multiple of --tile)")
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--serial", action="store_true", help="run the same tile tasks in this process, one by one")
    ap.add_argument("--out", help="save the factor L to this .npy file")
    args = ap.parse_args(argv)
    if args.n % args.tile or args.n <= 0 or args.tile <= 0:
        ap.error(f"--n ({args.n}) must be a positive multiple of --tile ({args.tile})")
    t, b = args.n // args.tile, args.tile
    a = spd_matrix(args.n, args.seed)
    tiles = tiles_of(a, b)
    start = time.perf_counter()
    if args.serial:
        class Done:  # a resolved "future"
            def __init__(self, value):
                self.value = value

            def result(self):
                return self.value

        def run_now(fn, *xs):
            return Done(fn(*[x.value if isinstance(x, Done) else x for x in xs]))

        futures, tasks = factor(run_now, tiles, t)
        values = {ij: f.result() if isinstance(f, Done) else f for ij, f in futures.items()}
        workers = 1
    else:
        from hpcmicro.futures import MPIPoolExecutor

        with MPIPoolExecutor() as ex:
            futures, tasks = factor(ex.submit, tiles, t)
            values = {ij: f.result() for ij, f in futures.items()}
            workers = ex.num_workers
    seconds = time.perf_counter() - start
    lower = assemble(values, t, b)
    if args.out:
        np.save(args.out, lower)
    reference = np.linalg.cholesky(a)
    error = float(np.linalg.norm(lower - reference) / np.linalg.norm(reference))
    print(json.dumps({"job": "cholesky", "n": args.n, "tile": b, "tiles": t, "tasks": tasks,
                      "critical_path_tasks": 3 * t - 2, "workers": workers, "seconds": seconds,
                      "relative_error": error, "serial": args.serial}), flush=True)
    return 0 if error <= 1e-10 else 1


if __name__ == "__main__":
    sys.exit(main())
