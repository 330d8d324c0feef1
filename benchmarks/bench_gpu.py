"""GPU benchmarks: memory bandwidth of batched element-wise kernels against the
device's peak, GPU busy fraction under a stream of ~1 ms microtasks, and CPU
against GPU per library kernel.

    mpiexec -n 2 python benchmarks/bench_gpu.py          # 1 master + 1 GPU worker
    mpiexec -n 2 python benchmarks/bench_gpu.py --doc    # ... and write its section of docs/benchmarks.md

Needs CuPy and a CUDA device (``pip install 'hpcmicro[gpu]'``); without them
it says so and exits 0 without numbers. Targets: >= 70% of peak bandwidth for
large batched element-wise kernels, GPU busy >= 90% with 1 ms microtasks.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)


# -- kernels (module level: every rank has them) ------------------------------------------

_buffers = {}


def _device_arrays(n_chunks, chunk):
    """One big input and output array per rank, allocated once (the 'dataset' in device memory)."""
    import cupy

    key = (n_chunks, chunk)
    if key not in _buffers:
        x = cupy.arange(n_chunks * chunk, dtype=cupy.float32).reshape(n_chunks, chunk)
        _buffers[key] = (x, cupy.empty_like(x))
    return _buffers[key]


def axpb_one(shape, i):
    x, y = _device_arrays(*shape)
    y[i] = 2.0 * x[i] + 1.0
    return None


def axpb_batch(shape, payloads):
    """The batched form: one launch over many consecutive chunks."""
    import cupy

    x, y = _device_arrays(*shape)
    idx = cupy.asarray(payloads)
    lo, hi = int(min(payloads)), int(max(payloads)) + 1
    if hi - lo == len(payloads):  # consecutive chunks: a slice, no gather
        y[lo:hi] = 2.0 * x[lo:hi] + 1.0
    else:
        y[idx] = 2.0 * x[idx] + 1.0
    return [None] * len(payloads)


def busy_task(iters, i):
    """About 1 ms of GPU work (sized by the calibration), synchronized so the task really ends."""
    import cupy

    a = _device_arrays(1, 1 << 20)[0][0]
    for _ in range(iters):
        a = cupy.sin(a) * 0.5 + 0.25
    cupy.cuda.get_current_stream().synchronize()
    return None


def peak_bandwidth(dev) -> float:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(dev)
    return 2.0 * props["memoryClockRate"] * 1e3 * props["memoryBusWidth"] / 8  # bytes/s (DDR)


def device_name(dev) -> str:
    import cupy

    name = cupy.cuda.runtime.getDeviceProperties(dev)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


# -- measurements -----------------------------------------------------------------------------

def bandwidth(rt, n_chunks, chunk) -> dict:
    from hpcmicro.kernels import Batched

    kernel = Batched(functools.partial(axpb_one, (n_chunks, chunk)), functools.partial(axpb_batch, (n_chunks, chunk)))
    rt.map(kernel, list(range(n_chunks)), root=0)  # warm-up: allocation, compilation
    t0 = time.perf_counter()
    rt.map(kernel, list(range(n_chunks)), root=0)
    wall = time.perf_counter() - t0
    moved = 2 * n_chunks * chunk * 4  # read x, write y (float32)
    return {"bytes": moved, "wall": wall, "bandwidth": moved / wall,
            "batches": sum(w["batches"] for w in rt.stats.workers)}


def busy_fraction(rt, n_tasks, iters) -> dict:
    kernel = functools.partial(busy_task, iters)
    rt.map(kernel, list(range(20)), root=0)  # warm-up
    t0 = time.perf_counter()
    rt.map(kernel, list(range(n_tasks)), root=0)
    wall = time.perf_counter() - t0
    busy = sum(w["busy_s"] for w in rt.stats.workers)
    workers = len(rt.stats.workers)
    return {"tasks": n_tasks, "wall": wall, "mean_task_s": busy / n_tasks, "busy_fraction": busy / (workers * wall)}


def cpu_vs_gpu() -> list:
    """Each library kernel's _impl on numpy and on cupy, same payload."""
    import cupy
    import numpy

    from hpcmicro.kernels import gemm, mandelbrot, montecarlo, nbody

    cases = [
        ("montecarlo.pi_hits (1M samples)",
         lambda xp: montecarlo._pi_hits_impl(montecarlo.MCParams(samples=1 << 20), 3, xp)),
        ("gemm block 512x512 (k=512)",
         lambda xp: gemm._impl(gemm.GemmParams(m=512, n=512, k=512, block_m=512, block_n=512), (0, 0), xp)),
        ("nbody block 1024 of 4096", lambda xp: nbody._impl(nbody.NBodyParams(n=4096, block=1024), (0, 1), xp)),
        ("mandelbrot 512x512 escape counts", lambda xp: mandelbrot.escape_counts(
            xp.asarray(numpy.linspace(-2, 1, 512)[None, :] + 1j * numpy.linspace(-1.5, 1.5, 512)[:, None]), 256, xp)),
    ]
    rows = []
    for name, fn in cases:
        times = {}
        for label, xp in (("cpu", numpy), ("gpu", cupy)):
            try:
                fn(xp)
                if xp is cupy:
                    cupy.cuda.Device().synchronize()
                t0 = time.perf_counter()
                for _ in range(3):
                    fn(xp)
                if xp is cupy:
                    cupy.cuda.Device().synchronize()
                times[label] = (time.perf_counter() - t0) / 3
            except Exception as exc:  # a kernel without an xp entry point: say so, no number
                times[label] = f"n/a ({type(exc).__name__})"
        rows.append((name, times))
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--doc", action="store_true")
    parser.add_argument("--chunks", type=int, default=4096)
    parser.add_argument("--chunk", type=int, default=1 << 16)  # 256 KiB float32 per chunk: 1 GiB in all
    args = parser.parse_args()

    import hpcmicro as hm
    from hpcmicro.mpi.devices import _cupy_devices

    cupy, found = _cupy_devices()
    if cupy is None:
        print(f"bench_gpu: no GPU here ({found}); nothing measured")
        return
    with hm.Runtime(device="gpu") as rt:
        if rt.size < 2:
            raise SystemExit("run with mpiexec -n 2 (1 master + 1 GPU worker)")
        worker = rt.rank == 1
        device = rt.backend.device if worker else None
        info = (device, device_name(device), peak_bandwidth(device)) if worker else None
        dev, name, peak = rt.comm.bcast(info, root=1)
        bw = bandwidth(rt, args.chunks, args.chunk)
        # Calibrate a ~1 ms task on the worker, then stream 2000 of them.
        iters = None
        if worker:
            busy_task(10, 0)
            t0 = time.perf_counter()
            busy_task(100, 0)
            iters = max(1, int(0.001 / ((time.perf_counter() - t0) / 100)))
        iters = rt.comm.bcast(iters, root=1)
        busy = busy_fraction(rt, 2000, iters)
        rows = rt.comm.bcast(cpu_vs_gpu() if worker else None, root=1)
        if rt.rank == 0:
            bw["peak"] = peak
            record = {"device": dev, "name": name, "bandwidth": bw, "busy": busy, "cpu_vs_gpu": rows}
            print(json.dumps(record, default=str))
            if args.doc:
                write_doc(render(record, args))


def render(rec, args) -> str:
    bw = rec["bandwidth"]
    lines = [
        "## GPU (issue: GPU microtask kernels)",
        "",
        f"Command: `mpiexec -n 2 python benchmarks/bench_gpu.py --doc` on {platform.node()}, "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        f"- Batched element-wise kernel (y = 2x + 1, float32, {args.chunks} tasks of {args.chunk * 4 // 1024} KiB): "
        f"{bw['bandwidth'] / 1e9:.0f} GB/s in {bw['batches']} batched launches, "
        f"{bw['bandwidth'] / bw['peak'] * 100:.0f}% of the device's peak {bw['peak'] / 1e9:.0f} GB/s "
        f"({rec['name']}).",
        f"- 1 ms microtasks: {rec['busy']['tasks']} tasks, mean {rec['busy']['mean_task_s'] * 1e3:.2f} ms, "
        f"GPU busy {rec['busy']['busy_fraction'] * 100:.0f}% of the call's wall time.",
        "",
        "| kernel | CPU (s) | GPU (s) |",
        "| --- | --- | --- |",
    ]
    for name, t in rec["cpu_vs_gpu"]:
        fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else v  # noqa: E731
        lines.append(f"| {name} | {fmt(t['cpu'])} | {fmt(t['gpu'])} |")
    return "\n".join(lines)


def write_doc(section: str) -> None:
    sys.path.insert(0, HERE)
    from docsection import write_section

    write_section("gpu", section)


if __name__ == "__main__":
    main()
