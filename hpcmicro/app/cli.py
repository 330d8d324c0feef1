"""The ``hpcmicro`` command: run a job spec (see docs/jobspec.md).

    hpcmicro --version
    hpcmicro run JOB.toml [--policy static|steal] [--output PATH]
    mpiexec -n 8 hpcmicro run JOB.toml

Every rank parses and validates the spec before MPI is touched, so a bad spec
fails alike everywhere: rank 0 prints ``hpcmicro: error: ...`` and every rank
exits 2. Exit statuses: 0 done, 1 a kernel raised (or the output could not be
written), 2 a bad command line, spec or output location.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import sys
import tempfile
from datetime import datetime, timezone

from .. import __version__
from .jobspec import POLICIES, JobSpec, JobSpecError, load

__all__ = ["main", "launch_rank", "write_output"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: the batch script requeues the job

# Set by the launchers we know (MPICH/Hydra, PMIx, Open MPI, Slurm's srun):
# the rank before MPI_Init, so that only rank 0 reports a bad spec.
RANK_VARIABLES = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID")


def launch_rank() -> int:
    """This process's rank according to the launcher's environment (0 if none says)."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 0


# -- command line -------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage, help, version and errors printed by rank 0 only (all ranks still exit)."""

    def _print_message(self, message, file=None):
        if launch_rank() == 0:
            super()._print_message(message, file)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hpcmicro", description="MPI microtask runtime: run a job spec.")
    parser.add_argument("--version", action="version", version=f"hpcmicro {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run a job spec (TOML) and write its result to HDF5",
                              description="Run a job spec; rank 0 writes the result to HDF5.")
    run.add_argument("spec", metavar="JOB.toml", help="the job spec (format: docs/jobspec.md)")
    run.add_argument("--policy", choices=POLICIES, help="scheduling policy (overrides job.policy)")
    run.add_argument("--output", metavar="PATH", help="HDF5 file to write (overrides job.output)")
    run.add_argument("--device", choices=("auto", "cpu", "gpu"), help="where tasks run (overrides job.device)")
    run.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                     help="override a spec value, e.g. --set tasks.range.n=100 --set job.args.samples=1000")
    ft = run.add_argument_group("fault tolerance (docs/fault-tolerance.md)")
    ft.add_argument("--checkpoint", metavar="PATH", help="HDF5 checkpoint: resume from it if it exists, keep it current")
    ft.add_argument("--checkpoint-every", metavar="SECONDS", type=float, default=60.0,
                    help="seconds between checkpoints (default 60)")
    ft.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start afresh")
    ft.add_argument("--retries", metavar="N", type=int, default=0, help="extra tries for a task that raises")
    ft.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                    help="after the last try: stop with an error (default) or record the task as failed and go on")
    ft.add_argument("--task-timeout", metavar="SECONDS", type=float,
                    help="hand a task running longer than this to another worker")
    obs = run.add_argument_group("observability")
    obs.add_argument("--trace", metavar="PATH", help="write a per-task timeline (Chrome trace JSON, opens in Perfetto)")
    obs.add_argument("--progress", choices=("auto", "bar", "lines", "off"), default="auto",
                     help="progress on rank 0: a bar on a terminal, plain lines in batch logs (default auto)")
    obs.add_argument("--progress-every", metavar="SECONDS", type=float, default=30.0,
                     help="seconds between progress lines in batch logs (default 30)")
    run.set_defaults(handler=cmd_run)
    plan = commands.add_parser("plan", help="validate a job spec and estimate its size, without running the job",
                               description="Validate a job spec, count its tasks, and estimate work, memory and "
                                           "output size from a few sample tasks run here (no MPI job).")
    plan.add_argument("spec", metavar="JOB.toml")
    plan.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides")
    plan.add_argument("--sample", metavar="N", type=int, default=1,
                      help="tasks to run here to time them and size their results (0: none; default 1)")
    plan.add_argument("--ranks", metavar="N", type=int, default=4, help="ranks to estimate the wall time for")
    plan.set_defaults(handler=cmd_plan)
    inspect_ = commands.add_parser("inspect", help="describe a result file or a checkpoint",
                                   description="Describe a result file (job, timings, statistics, failed tasks) "
                                               "or a checkpoint (progress of each call, failed tasks).")
    inspect_.add_argument("file", metavar="FILE.h5")
    inspect_.set_defaults(handler=cmd_inspect)
    report = commands.add_parser("report", help="print a result file's statistics (or a checkpoint's progress)",
                                 description="Print the statistics of a result file, or the progress of a checkpoint; "
                                             "--plot draws the per-rank timeline of a trace.")
    report.add_argument("file", metavar="FILE", help="result .h5 of `hpcmicro run`, a checkpoint .h5, or a trace .json")
    report.add_argument("--plot", metavar="OUT.png", help="draw a Gantt chart and utilization over time (needs a trace)")
    report.add_argument("--trace", metavar="TRACE.json", help="the trace to plot (default: the one the result file names)")
    report.set_defaults(handler=cmd_report)
    from .submit import add_submit_parser

    add_submit_parser(commands)
    return parser


def main(argv=None) -> int:
    """Entry point of ``hpcmicro`` and ``python -m hpcmicro``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse wants to exit
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE if exc.code else EXIT_OK
    return args.handler(args)


# -- hpcmicro run -------------------------------------------------------------------------


def cmd_run(args) -> int:
    try:
        spec = load(args.spec, args.overrides).with_overrides(policy=args.policy, output=args.output,
                                                              device=args.device)
        kernel, tasks = spec.kernel_callable(), spec.build_tasks()
    except JobSpecError as exc:
        return report(launch_rank(), exc, EXIT_USAGE)
    options = {"checkpoint": args.checkpoint, "checkpoint_every": args.checkpoint_every,
               "resume": not args.fresh, "retries": args.retries, "on_error": args.on_error,
               "task_timeout": args.task_timeout, "trace": args.trace,
               "progress": {"auto": "auto", "bar": True, "lines": "lines", "off": False}[args.progress],
               "progress_every": args.progress_every}
    return run_job(spec, kernel, tasks, output_key="--output" if args.output is not None else "job.output",
                   options=options)


def run_job(spec: JobSpec, kernel, tasks, output_key: str = "job.output", options: dict | None = None) -> int:
    """Run the spec's call on every rank; rank 0 writes the output and prints a summary.

    Exit status: 0 done, 1 a task failed, 2 bad input, 75 preempted (a
    checkpoint holds the progress; run the same command again to resume).
    """
    import hpcmicro as hm
    from hpcmicro.io.checkpoint import CheckpointError

    trace = (options or {}).get("trace")
    _log_on_rank0(launch_rank())
    try:
        runtime = hm.Runtime(policy=spec.policy, device=spec.device, **(options or {}))
        runtime.open()
    except (hm.InvalidCall, CheckpointError) as exc:
        return report(launch_rank(), exc, EXIT_USAGE)
    with runtime as rt:
        rank = rt.rank
        problem = _agree_on_output(rank, spec, output_key)
        if problem is not None:
            return report(rank, problem, EXIT_USAGE)
        problem = _agree(rank, _run_setup(spec) if rank == 0 else None)
        if problem is not None:
            return report(rank, problem, EXIT_FAILED)
        try:
            if spec.call == "map":
                result = rt.map(kernel, tasks, root=0)
            else:
                result = rt.map_reduce(kernel, tasks, op=spec.op, root=0)
        except hm.TaskError as exc:  # raised on every rank alike
            return report(rank, exc, EXIT_FAILED)
        except hm.Preempted:  # the runtime has said why on rank 0
            return EXIT_PREEMPTED
        except CheckpointError as exc:
            return report(rank, exc, EXIT_USAGE)
        except hm.InvalidCall as exc:  # likewise; the spec checks should have caught it
            return report(rank, exc, EXIT_USAGE)
        stats = rt.stats
    if rank != 0:
        return EXIT_OK
    try:
        write_output(spec.output, spec, result, stats, trace=trace)
    except Exception as exc:  # a full disk, a result that will not pickle: say so, no traceback
        return report(rank, f"cannot write {spec.output}: {type(exc).__name__}: {exc}", EXIT_FAILED)
    if spec.finalize is not None:
        try:
            spec.finalize(result, spec.output, **spec.args)
        except Exception as exc:
            return report(rank, f"{spec.path}: job.finalize failed: {type(exc).__name__}: {exc}", EXIT_FAILED)
    _print(summary(spec, result, stats))
    return EXIT_OK


def _run_setup(spec: JobSpec):
    """Rank 0 prepares the job's inputs (job.setup) before any task runs; returns a problem or None."""
    if spec.setup is None:
        return None
    try:
        spec.setup(**spec.args)
    except Exception as exc:
        return f"{spec.path}: job.setup failed: {type(exc).__name__}: {exc}"
    return None


def _agree(rank: int, problem):
    """Rank 0's verdict, on every rank (so that all stop, or none)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD  # the runtime works on a duplicate, so this never meets its messages
    return comm.bcast(problem, root=0) if comm.size > 1 else problem


def _log_on_rank0(rank: int) -> None:
    """Batch logs get the runtime's notices (MPI mode, lost ranks) from rank 0."""
    import logging

    if rank == 0:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log = logging.getLogger("hpcmicro")
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _agree_on_output(rank: int, spec: JobSpec, key: str):
    """Rank 0 checks that it can write the output; every rank learns the verdict.

    Checked once MPI is up rather than on every rank beforehand: only rank 0
    writes, and a folder that exists on one node but not another must not make
    some ranks quit while the others wait for them.
    """
    return _agree(rank, _output_problem(spec, key) if rank == 0 else None)


def _output_problem(spec: JobSpec, key: str) -> str | None:
    path = os.path.abspath(spec.output)
    folder = os.path.dirname(path)
    where = f"{spec.path}: {key}"
    if not os.path.isdir(folder):
        return f"{where}: folder {folder} does not exist"
    if os.path.isdir(path):
        return f"{where}: {spec.output} is a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{where}: folder {folder} is not writable"
    return None


def report(rank: int, error, status: int) -> int:
    """Print ``hpcmicro: error: ...`` on rank 0 (no traceback); return ``status``."""
    if rank == 0:
        _print(f"hpcmicro: error: {error}", file=sys.stderr)
    return status


def _print(text: str, file=None) -> None:
    """Print with control characters (terminal escapes) replaced, tabs and newlines kept."""
    clean = "".join(c if c.isprintable() or c in "\n\t" else "?" for c in str(text))
    print(clean, file=file or sys.stdout, flush=True)


def summary(spec: JobSpec, result, stats) -> str:
    """One line: what ran, where, how long, what came out."""
    call = f"map_reduce({spec.op})" if spec.call == "map_reduce" else "map"
    ranks = f"{stats.ranks} rank{'s' if stats.ranks != 1 else ''}"
    array = _numeric(result) if spec.call == "map_reduce" else None
    if spec.call == "map":
        value = f"{len(result)} results"
    elif array is None:
        value = f"result {type(result).__name__}"
    elif array.ndim == 0 and len(str(result)) <= 40:
        value = f"result {result}"
    else:
        value = f"result {array.dtype} array {array.shape}"
    return (f"{spec.name}: {call} over {spec.n_tasks} tasks ({stats.tasks} run) on {ranks}, "
            f"policy {stats.policy}, {stats.wall_s:.3f} s; {value} -> {spec.output}")


# -- HDF5 output --------------------------------------------------------------------------


def write_output(path: str, spec: JobSpec, result, stats, trace: str | None = None) -> None:
    """Write ``result`` and the run's metadata to ``path`` atomically (temp file + rename).

    Dataset ``result``: numbers and equal-shape numeric arrays are stored as a
    native array (``map``: one row per task, in task-id order); anything else
    is pickled, one variable-length uint8 entry per result (a scalar entry for
    ``map_reduce``). The dataset's ``encoding`` attribute says which
    ("native" or "pickle").
    """
    import h5py

    path = os.path.abspath(path)
    folder, base = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            _write_result(f, spec.call, result)
            f.attrs.update(_attributes(spec, stats, trace))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; an output is a normal file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _attributes(spec: JobSpec, stats, trace: str | None = None) -> dict:
    return {
        "trace": os.path.abspath(trace) if trace else "",
        "spec": spec.text,
        "job": spec.name,
        "kernel": spec.kernel,
        "args": json.dumps(spec.args, default=str),
        "call": spec.call,
        "op": spec.op or "",
        "policy": stats.policy,
        "tasks": f"{spec.tasks_source} {json.dumps(spec.tasks_value, default=str)}",
        "ranks": stats.ranks,
        "wall_s": stats.wall_s,
        "hpcmicro_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "stats": json.dumps(stats.as_dict(), default=str),
    }


def _write_result(f, call: str, result) -> None:
    import h5py
    import numpy as np

    native = _numeric(result) if call == "map_reduce" else _stacked(result)
    if native is not None:
        ds = f.create_dataset("result", data=native)
        ds.attrs["encoding"] = "native"
        return
    vlen = h5py.vlen_dtype(np.uint8)
    if call == "map_reduce":
        ds = f.create_dataset("result", shape=(), dtype=vlen)
        ds[()] = _pickled(result)
    else:
        blobs = np.empty(len(result), dtype=object)
        for i, value in enumerate(result):
            blobs[i] = _pickled(value)
        ds = f.create_dataset("result", data=blobs, dtype=vlen)
    ds.attrs["encoding"] = "pickle"


def _numeric(value):
    """``value`` as a numpy array if it is a number or numeric array, else None."""
    import numpy as np

    if not isinstance(value, (int, float, complex, np.number, np.bool_, np.ndarray)):
        return None
    array = np.asarray(value)
    return array if array.dtype.kind in "biufc" else None  # e.g. an int past 64 bits is 'O'


def _stacked(values):
    """The ``map`` results as one array (task axis first) if all are numeric alike, else None."""
    import numpy as np

    arrays = [_numeric(v) for v in values]
    if any(a is None for a in arrays):
        return None
    if not arrays:
        return np.empty((0,))
    if len({a.shape for a in arrays}) != 1:
        return None
    return np.stack(arrays)


def _pickled(value):
    import numpy as np

    return np.frombuffer(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- hpcmicro report ----------------------------------------------------------------------


def cmd_report(args) -> int:
    """Print a result file's statistics or a checkpoint's progress; --plot draws a trace."""
    from . import report as reporting

    path = args.file
    try:
        if path.endswith(".json"):
            trace = path
            if not args.plot:
                data = reporting.load_trace(path)
                _print(f"{path}: trace of {sum(len(s) for s, _ in data.values())} tasks on ranks {list(data)}")
        else:
            _print(reporting.describe_file(path))
            trace = args.trace or _trace_named_by(path)
        if args.plot:
            if not trace:
                return report_error(f"{path}: no trace to plot: run with --trace, or pass --trace TRACE.json")
            reporting.plot_trace(trace, args.plot)
            _print(f"wrote {args.plot}")
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        return report_error(f"{type(exc).__name__}: {exc}" if not isinstance(exc, (ValueError, RuntimeError)) else exc)
    return EXIT_OK


def report_error(message) -> int:
    return report(0, message, EXIT_USAGE)


def _trace_named_by(path: str):
    import h5py

    with h5py.File(path, "r") as f:
        trace = f.attrs.get("trace")
    return str(trace) if trace else None


# -- hpcmicro plan / inspect ---------------------------------------------------------------


def cmd_plan(args) -> int:
    """Validate, count tasks, estimate from samples; launches no MPI job."""
    from .planning import plan_text

    try:
        spec = load(args.spec, args.overrides)
        _print(plan_text(spec, sample=max(0, args.sample), ranks=max(2, args.ranks)))
    except JobSpecError as exc:
        return report(0, exc, EXIT_USAGE)
    return EXIT_OK


def cmd_inspect(args) -> int:
    from . import report as reporting

    try:
        _print(reporting.inspect_file(args.file))
    except (OSError, ValueError, KeyError) as exc:
        return report_error(f"{args.file}: {exc}" if isinstance(exc, OSError) else exc)
    return EXIT_OK
