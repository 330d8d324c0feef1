"""The ``hpcmicro`` command: run a job spec (see docs/jobspec.md).

    hpcmicro --version
    hpcmicro run JOB.toml [--policy static|steal] [--output PATH]
    mpiexec -n 8 hpcmicro run JOB.toml

Every rank parses and validates the spec and the options before MPI is
touched, so a bad spec fails alike everywhere: rank 0 prints ``hpcmicro:
error: ...`` and every rank exits 2. Exit statuses (``hpcmicro.constants``): 0
done, 1 a kernel raised (or the output could not be written), 2 a bad command
line, spec or output location, 75 preempted (a checkpoint holds the progress).

The flags of ``hpcmicro run`` that set Runtime options take their defaults,
help and checks from ``hpcmicro.options``; the result file is written and read
by ``hpcmicro.io.results``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .. import __version__
from ..constants import DEVICES, EXIT_BAD_INPUT, EXIT_OK, EXIT_TASK_FAILED, ON_ERROR, POLICY_NAMES
from ..errors import InvalidCall
from ..io.results import ResultAttrs, as_numeric, file_kind, read_result, write_result
from ..options import HELP, Options
from .jobspec import OPTION_DEFAULTS, JobSpec, JobSpecError, load

if TYPE_CHECKING:
    from ..observe.stats import CallStats

__all__ = ["main", "launch_rank", "write_output", "run_options", "cli_message"]

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


PROGRESS_WORDS = {"auto": "auto", "bar": True, "lines": "lines", "off": False}  # --progress -> Options.progress


def _help(name: str, note: str | None = None) -> str:
    """The help line of Runtime option ``name`` (hpcmicro.options.HELP), escaped for argparse's %-formatting."""
    return (HELP[name] + (f" ({note})" if note else "")).replace("%", "%%")


def _checked(name: str, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type`` for option ``name``: convert the text, then let ``Options`` judge the value.

    A bad value is then refused while the command line is parsed, on every rank
    alike, and also by ``hpcmicro submit --run-args`` before a job is queued.
    """
    def parse(text: str) -> Any:
        value = convert(text)  # ValueError: argparse says "invalid float value: 'x'"
        try:
            Options(**{name: value})
        except InvalidCall as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    parse.__name__ = convert.__name__  # the name argparse puts in its messages
    return parse


def _option(group, flag: str, name: str, convert: Callable[[str], Any] | None = None, **kwargs) -> None:
    """A ``hpcmicro run`` flag that sets Runtime option ``name``, with its default and help from Options."""
    default = OPTION_DEFAULTS[name]
    note = None if default is None else f"default {default}"
    group.add_argument(flag, dest=name, default=default, help=_help(name, note),
                       type=_checked(name, convert) if convert else None, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hpcmicro", description="MPI microtask runtime: run a job spec.")
    parser.add_argument("--version", action="version", version=f"hpcmicro {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run a job spec (TOML) and write its result to HDF5",
                              description="Run a job spec; rank 0 writes the result to HDF5.")
    run.add_argument("spec", metavar="JOB.toml", help="the job spec (format: docs/jobspec.md)")
    run.add_argument("--policy", choices=POLICY_NAMES, help=_help("policy", "overrides job.policy"))
    run.add_argument("--output", metavar="PATH", help="HDF5 file to write (overrides job.output)")
    run.add_argument("--device", choices=DEVICES, help=_help("device", "overrides job.device"))
    run.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                     help="override a spec value, e.g. --set tasks.range.n=100 --set job.args.samples=1000")
    ft = run.add_argument_group("fault tolerance (docs/fault-tolerance.md)")
    _option(ft, "--checkpoint", "checkpoint", metavar="PATH")
    _option(ft, "--checkpoint-every", "checkpoint_every", float, metavar="SECONDS")
    ft.add_argument("--fresh", action="store_true",
                    help="ignore an existing checkpoint and start afresh (the Runtime option resume=False)")
    _option(ft, "--retries", "retries", int, metavar="N")
    _option(ft, "--on-error", "on_error", choices=ON_ERROR)
    _option(ft, "--task-timeout", "task_timeout", float, metavar="SECONDS")
    _option(ft, "--preempt-grace", "preempt_grace", float, metavar="SECONDS")
    obs = run.add_argument_group("observability")
    _option(obs, "--trace", "trace", metavar="PATH")
    obs.add_argument("--progress", choices=PROGRESS_WORDS, default="auto",
                     help=_help("progress", "here bar = True, off = False; default auto"))
    _option(obs, "--progress-every", "progress_every", float, metavar="SECONDS")
    sched = run.add_argument_group("scheduling at scale (docs/scale.md)")
    sched.add_argument("--group-size", dest="group_size", default=None, metavar="N|node|auto|off",
                       type=_checked("group_size", str), help=_help("group_size"))
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
    report.add_argument("--plot", metavar="OUT.png",
                        help="draw a Gantt chart and utilization over time (needs a trace)")
    report.add_argument("--trace", metavar="TRACE.json",
                        help="the trace to plot (default: the one the result file names)")
    report.set_defaults(handler=cmd_report)
    from .submit import add_submit_parser

    add_submit_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hpcmicro`` and ``python -m hpcmicro``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse wants to exit
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT if exc.code else EXIT_OK
    return args.handler(args)


# -- hpcmicro run -------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    try:
        spec = load(args.spec, args.overrides).with_overrides(policy=args.policy, output=args.output,
                                                              device=args.device)
        kernel, tasks = spec.kernel_callable(), spec.build_tasks()
        options = run_options(spec, args)
    except (JobSpecError, InvalidCall) as exc:
        flag = "--trace: " if isinstance(exc, InvalidCall) and str(exc).startswith("trace ") else ""
        return report(launch_rank(), f"{flag}{exc}", EXIT_BAD_INPUT)
    return run_job(spec, kernel, tasks, output_key="--output" if args.output is not None else "job.output",
                   options=options)


def run_options(spec: JobSpec, args: argparse.Namespace) -> Options:
    """The Runtime options of a run; InvalidCall for a bad value.

    Policy and device come from the spec (after --policy/--device), the rest from the flags.
    """
    trace = resume_trace_path(args.trace, args.checkpoint, resume=not args.fresh)
    return Options(policy=spec.policy, device=spec.device, checkpoint=args.checkpoint,
                   checkpoint_every=args.checkpoint_every, resume=not args.fresh, retries=args.retries,
                   on_error=args.on_error, task_timeout=args.task_timeout, preempt_grace=args.preempt_grace,
                   trace=trace, progress=PROGRESS_WORDS[args.progress], progress_every=args.progress_every,
                   **({"group_size": args.group_size} if args.group_size is not None else {}))


def resume_trace_path(trace: str | None, checkpoint: str | None, resume: bool = True) -> str | None:
    """The trace path of a run: ``trace``, unless this run resumes a checkpoint and ``trace`` exists.

    A resumed run must not overwrite the trace of the run it continues, so it
    writes the first free ``NAME.1.json``, ``NAME.2.json``, ... beside it
    (``run.trace.json`` -> ``run.trace.1.json``). A fresh run overwrites.
    """
    if trace is None or checkpoint is None or not resume:
        return trace
    if not (os.path.exists(checkpoint) and os.path.exists(trace)):
        return trace
    stem, ext = os.path.splitext(trace)
    ext = ext or ".json"
    k = 1
    while os.path.exists(f"{stem}.{k}{ext}"):
        k += 1
    return f"{stem}.{k}{ext}"


def cli_message(error: BaseException) -> str:
    """A Runtime error worded for the command line, where the Runtime's ``resume=False`` is ``--fresh``.

    A checkpoint that cannot be used always names ``--fresh`` (once): the
    engine's messages speak only of Runtime options.
    """
    from ..io.checkpoint import CheckpointError

    text = str(error)
    if "--fresh" in text:
        return text
    if "resume=False" in text:
        return text.replace("resume=False", "--fresh")
    if isinstance(error, CheckpointError):
        return f"{text}; run with --fresh to ignore the checkpoint and start afresh"
    return text


def run_job(spec: JobSpec, kernel: Callable[[Any], Any], tasks: Any, output_key: str = "job.output",
            options: Options | None = None) -> int:
    """Run the spec's call on every rank; rank 0 writes the output and prints a summary.

    Exit status: 0 done, 1 a task failed, 2 bad input, 75 preempted (a
    checkpoint holds the progress; run the same command again to resume).
    """
    import hpcmicro as hm
    from hpcmicro.io.checkpoint import CheckpointError

    if options is None:
        options = Options(policy=spec.policy, device=spec.device)
    _log_on_rank0(launch_rank())
    try:
        runtime = hm.Runtime(options=options)
        runtime.open()
    except (hm.InvalidCall, CheckpointError) as exc:
        return report(launch_rank(), cli_message(exc), EXIT_BAD_INPUT)
    with runtime as rt:
        rank = rt.rank
        problem = _agree_on_output(rank, spec, output_key)
        if problem is not None:
            return report(rank, problem, EXIT_BAD_INPUT)
        problem = _agree(rank, _run_setup(spec) if rank == 0 else None)
        if problem is not None:
            return report(rank, problem, EXIT_TASK_FAILED)
        try:
            if spec.call == "map":
                result = rt.map(kernel, tasks, root=0)
            else:
                result = rt.map_reduce(kernel, tasks, op=spec.op, root=0)
        except hm.TaskError as exc:  # raised on every rank alike
            return report(rank, exc, EXIT_TASK_FAILED)
        except hm.Preempted as exc:  # the runtime has said why on rank 0
            return exc.code  # 75, or 130 after Ctrl-C
        except (hm.InvalidCall, CheckpointError) as exc:  # likewise (a checkpoint of another job, say)
            return report(rank, cli_message(exc), EXIT_BAD_INPUT)
        stats = rt.stats
    if rank != 0:
        return EXIT_OK
    try:
        write_output(spec.output, spec, result, stats, trace=options.trace)
    except Exception as exc:  # a full disk, a result that will not pickle: say so, no traceback
        return report(rank, f"cannot write {spec.output}: {type(exc).__name__}: {exc}", EXIT_TASK_FAILED)
    note = None
    if spec.finalize is not None:
        try:
            note = spec.finalize(result, spec.output, **spec.args)
        except Exception as exc:
            return report(rank, f"{spec.path}: job.finalize failed: {type(exc).__name__}: {exc}", EXIT_TASK_FAILED)
    _print(summary(spec, result, stats))
    if isinstance(note, str) and note:  # a finalize hook's line for the user, e.g. the pi estimate
        _print(note)
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


def report(rank: int, error: object, status: int) -> int:
    """Print ``hpcmicro: error: ...`` on rank 0 (no traceback); return ``status``."""
    if rank == 0:
        _print(f"hpcmicro: error: {error}", file=sys.stderr)
    return status


def _print(text: str, file=None) -> None:
    """Print with control characters (terminal escapes) replaced, tabs and newlines kept."""
    clean = "".join(c if c.isprintable() or c in "\n\t" else "?" for c in str(text))
    print(clean, file=file or sys.stdout, flush=True)


def summary(spec: JobSpec, result: Any, stats: CallStats) -> str:
    """One line: what ran, where, how long, what came out."""
    call = f"map_reduce({spec.op})" if spec.call == "map_reduce" else "map"
    ranks = f"{stats.ranks} rank{'s' if stats.ranks != 1 else ''}"
    array = as_numeric(result) if spec.call == "map_reduce" else None
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


# -- the result file -------------------------------------------------------------------


def write_output(path: str, spec: JobSpec, result: Any, stats: CallStats, trace: str | None = None) -> None:
    """Write the run's result file atomically (layout: ``hpcmicro.io.results``)."""
    write_result(path, result, result_attrs(spec, stats, trace))


def result_attrs(spec: JobSpec, stats: CallStats, trace: str | None = None) -> ResultAttrs:
    """What a result file records about the run: the spec, and the call's statistics."""
    return ResultAttrs(call=spec.call, policy=stats.policy, ranks=stats.ranks, wall_s=stats.wall_s,
                       stats=stats.as_dict(), spec=spec.text, job=spec.name, kernel=spec.kernel, args=spec.args,
                       op=spec.op, tasks_source=spec.tasks_source, tasks_value=spec.tasks_value,
                       trace=os.path.abspath(trace) if trace else None)


# -- hpcmicro report ----------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    """Print a result file's statistics or a checkpoint's progress; --plot draws a trace."""
    from . import report as reporting

    path = args.file
    try:
        if path.endswith(".json"):
            trace = path
            data = reporting.load_trace(path)  # ValueError for JSON that is not a trace
            if not args.plot:
                _print(f"{path}: trace of {sum(len(s) for s, _ in data.values())} tasks on ranks {list(data)}")
        else:
            text, named = read_file_safely("report", path)
            _print(text)
            trace = args.trace or named
        if args.plot:
            if not trace:
                return report_error(f"{path}: no trace to plot: run with --trace, or pass --trace TRACE.json")
            reporting.plot_trace(trace, args.plot)
            _print(f"wrote {args.plot}")
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        return report_error(one_line(f"{type(exc).__name__}: {exc}" if not isinstance(exc, (ValueError, RuntimeError))
                                     else exc))
    except Exception as exc:  # a damaged or foreign file can fail in any way: still one line, no traceback
        return report_error(file_error(path, exc))
    return EXIT_OK


def report_error(message: object) -> int:
    return report(0, message, EXIT_BAD_INPUT)


def one_line(message: object) -> str:
    """``message`` on one line: HDF5's messages carry newlines (a timestamp, the file descriptor, ...)."""
    return " ".join(str(message).split())


def file_error(path: str, error: BaseException) -> str:
    """One line naming ``path`` and what is wrong with it, for any error met reading it.

    Our own errors (CheckpointError, ValueError from the readers) already name
    the file and the problem; an OSError says what the system said (no such
    file, a folder, no permission); anything else (h5py or a damaged file
    failing somewhere unforeseen) is named by its type.
    """
    from ..io.checkpoint import CheckpointError

    if isinstance(error, (CheckpointError, ValueError)):
        text = str(error)
    elif isinstance(error, OSError) and error.strerror and error.filename is not None:
        text = f"cannot read it: {error.strerror}"  # open(): FileNotFoundError, IsADirectoryError, ...
    elif isinstance(error, OSError):
        text = str(error)  # ours (not an HDF5 file, truncated) or h5py's (it names no errno)
    else:
        text = f"{type(error).__name__}: {error}"
    text = one_line(text) or type(error).__name__
    return text if text.startswith(f"{path}:") else f"{path}: {text}"


def _trace_named_by(path: str) -> str | None:
    """The trace a result file names (None for a checkpoint, or a run without --trace)."""
    if file_kind(path) != "result":
        return None
    return read_result(path, value=False).attrs.trace


# -- hpcmicro plan / inspect ---------------------------------------------------------------


def cmd_plan(args: argparse.Namespace) -> int:
    """Validate, count tasks, estimate from samples; launches no MPI job."""
    from .planning import plan_text

    if args.sample < 0:
        return report(0, f"--sample must be >= 0, got {args.sample}", EXIT_BAD_INPUT)
    if args.ranks < 1:
        return report(0, f"--ranks must be >= 1, got {args.ranks}", EXIT_BAD_INPUT)
    try:
        spec = load(args.spec, args.overrides)
        _print(plan_text(spec, sample=args.sample, ranks=max(2, args.ranks)))
    except JobSpecError as exc:
        return report(0, exc, EXIT_BAD_INPUT)
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    """Describe a result file or a checkpoint; any file that cannot be read is one line on stderr and exit 2."""
    try:
        text, _ = read_file_safely("inspect", args.file)
    except Exception as exc:  # a missing, truncated, corrupt or foreign file: never a traceback
        return report_error(file_error(args.file, exc))
    _print(text)
    return EXIT_OK


# -- reading a file that may be damaged ------------------------------------------------------

# HDF5 does not defend itself against damaged metadata: one flipped bit in a result file's metadata can
# segfault it or send it into an endless loop (tests/unit/test_inspect_errors.py finds both). A checkpoint
# is verified (SHA-256) before HDF5 sees a byte of it, so it is read here; anything else (a result file has
# no checksum: finalize hooks add datasets to it after it is written) is parsed in a child process that
# is killed after READ_TIMEOUT_S, so a damaged file costs one error line, never a crash or a hang. The child
# costs about 0.3 s (a Python start and the h5py import), once per command.
READ_TIMEOUT_S = 60.0


class FileProblem(ValueError):
    """A file that could not be read; the message names it and says why, on one line."""


def read_file_safely(what: str, path: str) -> tuple[str, str | None]:
    """``(text, trace)`` of ``hpcmicro inspect`` (``what="inspect"``) or ``report`` for ``path``.

    ``trace`` is the trace a result file names (``report`` only). Raises the
    reader's own error for a checkpoint, FileProblem for anything else.
    """
    from ..io.results import sniff

    # Its first bytes, read with plain open(): a missing file, a folder, bytes that are no HDF5 file or a
    # truncated one fail here at once.
    if sniff(path) == "checkpoint":  # read_checkpoint verifies the whole file before h5py parses it
        return _read_file(what, path)
    return _read_in_child(what, path)


def _read_file(what: str, path: str) -> tuple[str, str | None]:
    from . import report as reporting

    if what == "inspect":
        return reporting.inspect_file(path), None
    return reporting.describe_file(path), _trace_named_by(path)


def _read_in_child(what: str, path: str) -> tuple[str, str | None]:
    import json
    import signal
    import subprocess

    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH"))
                                                      if p))
    code = "import sys; from hpcmicro.app.cli import _child_read; sys.exit(_child_read(sys.argv[1:]))"
    try:
        child = subprocess.run([sys.executable, "-c", code, what, os.fspath(path)], capture_output=True,
                               text=True, timeout=READ_TIMEOUT_S, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:  # subprocess.run has killed it
        raise FileProblem(f"{path}: HDF5 did not finish reading it in {READ_TIMEOUT_S:g} s: its metadata is "
                          f"damaged (or the file system is stuck)") from None
    if child.returncode < 0:
        try:
            name = signal.Signals(-child.returncode).name
        except ValueError:
            name = f"signal {-child.returncode}"
        raise FileProblem(f"{path}: HDF5 crashed reading it ({name}): the file is damaged")
    try:
        answer = json.loads(child.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        last = (child.stderr.strip().splitlines() or [f"exit status {child.returncode}"])[-1]
        raise FileProblem(f"{path}: could not be read: {last}") from None
    if "error" in answer:
        raise FileProblem(answer["error"])
    return answer["text"], answer.get("trace")


def _child_read(argv: Sequence[str]) -> int:
    """The child's side of ``_read_in_child``: one JSON line on stdout, the text or the error."""
    import json

    what, path = argv
    try:
        text, trace = _read_file(what, path)
        answer: dict = {"text": text, "trace": trace}
    except Exception as exc:
        answer = {"error": file_error(path, exc)}
    sys.stdout.write("\n" + json.dumps(answer) + "\n")
    sys.stdout.flush()
    return 0
