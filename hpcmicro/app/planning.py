"""``hpcmicro plan``: what a job spec will do, before it runs.

Counts the root tasks, says how they travel, and (with ``sample`` > 0) runs
that many tasks here, in-process and without MPI, to time them and size their
results; from those it extrapolates the total work, the wall time on a number
of ranks, the size of the output and what rank 0 must hold. Tasks that spawn
children make the totals lower bounds (their count is known only by running).
"""

from __future__ import annotations

import pickle
import time

from .jobspec import JobSpec

__all__ = ["plan_text"]


def plan_text(spec: JobSpec, sample: int = 1, ranks: int = 4) -> str:
    tasks = spec.build_tasks()
    n = spec.n_tasks
    lines = [
        f"job {spec.name}: {spec.call}{f'({spec.op})' if spec.op else ''} of {spec.kernel}, policy {spec.policy}, "
        f"device {spec.device}",
        f"tasks: {n} root tasks from tasks.{spec.tasks_source} = {_short(spec.tasks_value)}",
    ]
    if spec.tasks_source == "list":
        size = len(pickle.dumps(list(tasks), protocol=pickle.HIGHEST_PROTOCOL))
        lines.append(f"payloads: {_bytes(size)} pickled in all, sent from rank 0 with the tasks")
    else:
        lines.append("payloads: computed on every rank from the decomposition (runs of tasks travel as 2 integers)")
    if spec.setup is not None:
        lines.append("setup: job.setup runs on rank 0 before the call")
    if sample <= 0 or n == 0:
        lines.append("no sample run (--sample 0): no estimates")
        return "\n".join(lines)
    measured = _sample(spec, tasks, min(sample, n))
    if isinstance(measured, str):
        lines.append(measured)
        return "\n".join(lines)
    mean_s, result_bytes, spawned = measured
    workers = ranks - 1
    total_s = mean_s * n
    lines += [
        f"sample: {min(sample, n)} task(s) run here: {mean_s * 1e3:.3f} ms each, results of ~{_bytes(result_bytes)}"
        + (f", {spawned} children spawned (totals below are lower bounds)" if spawned else ""),
        f"work: ~{total_s:.1f} s of kernel time; on {ranks} ranks ({workers} workers) ~{total_s / workers:.1f} s"
        " wall if the sample is typical",
    ]
    if spec.call == "map":
        lines.append(f"output: ~{_bytes(result_bytes * n)} of results, held on rank 0 before writing "
                     f"(use a reduction, or write from the kernel, if that is too much)")
    else:
        lines.append(f"output: one value of ~{_bytes(result_bytes)}; each worker holds a few partial results "
                     "(about 2 log2(tasks) per contiguous run)")
    return "\n".join(lines)


def _sample(spec: JobSpec, tasks, k: int):
    """Run the first k root tasks in-process: (mean seconds, mean result bytes, children) or a message."""
    from ..engine import context as taskcontext

    kernel = spec.kernel_callable()
    payloads = [tasks.payload(i) for i in range(k)] if hasattr(tasks, "payload") else list(tasks)[:k]
    children = []
    ctx = taskcontext.TaskContext(0, 1, lambda cid, payload, prio: children.append(cid))
    taskcontext._set_current(ctx)
    sizes, t0 = [], time.perf_counter()
    try:
        for i, payload in enumerate(payloads):
            ctx.task_id = (i,)  # also starts its spawn count at 0
            value = kernel(payload)
            sizes.append(_nbytes(value))
    except Exception as exc:
        return f"sample: the first task raised {type(exc).__name__}: {exc} (inputs made by job.setup missing?)"
    finally:
        taskcontext._set_current(None)
    return (time.perf_counter() - t0) / k, sum(sizes) / k, len(children)


def _nbytes(value) -> int:
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    try:
        return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:
        return 0


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."
