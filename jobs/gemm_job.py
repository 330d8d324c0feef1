"""Blocked GEMM (hpcmicro.kernels.gemm): C blocks in parallel, then C checked against numpy."""

import h5py
import numpy as np

from hpcmicro.kernels import gemm

TOLERANCE = 1e-12  # |C - A@B| <= TOLERANCE * (|A| @ |B|), element-wise (docs/kernels.md)


def _params(m, n, k, block_m, block_n, seed):
    return gemm.GemmParams(m=m, n=n, k=k, block_m=block_m, block_n=block_n, seed=seed)


def block(payload, m=1024, n=1024, k=1024, block_m=128, block_n=128, seed=0):
    """One block of C = A @ B (an hm.Blocks payload over C)."""
    return gemm.gemm_block(_params(m, n, k, block_m, block_n, seed), payload)


def finalize(blocks, output, m=1024, n=1024, k=1024, block_m=128, block_n=128, seed=0):
    """Assemble C, compare with numpy's A @ B, store both C and the error in the output."""
    import hpcmicro as hm

    params = _params(m, n, k, block_m, block_n, seed)
    c = gemm.assemble(params, blocks, list(hm.Blocks((m, n), (block_m, block_n))))
    a, b = gemm.matrices(params, np)
    bound = TOLERANCE * (np.abs(a) @ np.abs(b))
    error = np.abs(c - a @ b)
    with h5py.File(output, "a") as f:
        for name in ("C",):
            if name in f:
                del f[name]
        f.create_dataset("C", data=c)
        f.attrs["max_abs_error_vs_numpy"] = float(error.max())
    if not (error <= bound).all():
        raise AssertionError(f"C differs from numpy's A @ B beyond the tolerance: max error {error.max():.3e}")
