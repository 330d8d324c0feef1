"""``hpcmicro submit``: write a Slurm batch script for job specs and submit it.

    hpcmicro submit JOB.toml --time 2:00:00 [--nodes N] [--ntasks-per-node N] [--gpus G]
                    [--preemptible] [--partition P] [--account A] [--dry-run] ...
    hpcmicro submit a.toml b.toml c.toml --time 30     # a job array, one task per spec

The script comes from the same template as the examples in ``slurm/``
(hpcmicro/app/slurm.py); it is written to ``--script`` (default ``<job name>.sbatch``)
and submitted with ``sbatch``; the job id is printed on stdout. ``--dry-run``
prints the script and submits nothing. Exit status: 0 submitted (or printed), 2
a bad option or spec, no ``sbatch``, or ``sbatch`` refused the job. Nothing here
touches MPI.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

from ..constants import EXIT_BAD_INPUT, EXIT_OK
from .slurm import (DEFAULT_MPI, DEFAULT_PREEMPT_GRACE_S, DEFAULT_SIGNAL_S, BatchOptions, SubmitError, render,
                    sbatch_path, submit)

__all__ = ["add_submit_parser", "cmd_submit", "main"]


def add_submit_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``submit`` to the ``hpcmicro`` sub-commands (``subparsers`` of ``add_subparsers``)."""
    p = subparsers.add_parser(
        "submit", help="write a Slurm batch script for job specs and submit it with sbatch",
        description="Write a Slurm batch script that runs `hpcmicro run` on job specs, and submit it "
                    "with sbatch (the job id goes to stdout). Several specs make a job array, one task "
                    "each. See docs/slurm.md.")
    p.add_argument("specs", nargs="+", metavar="JOB.toml", help="job spec(s); several make a job array")
    res = p.add_argument_group("resources")
    res.add_argument("--time", "-t", required=True, metavar="TIME",
                     help="time limit: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS")
    res.add_argument("--nodes", "-N", type=int, default=1, metavar="N", help="nodes (default 1)")
    res.add_argument("--ntasks-per-node", type=int, metavar="N",
                     help="MPI ranks per node (default: one per CPU of the node; with --gpus, one per GPU)")
    res.add_argument("--gpus", type=int, default=0, metavar="G",
                     help="GPUs per node; one rank per GPU, bound by SLURM_LOCALID")
    res.add_argument("--cpus-per-task", type=int, metavar="N", help="CPUs per rank")
    res.add_argument("--partition", "-p", metavar="NAME")
    res.add_argument("--account", "-A", metavar="NAME")
    res.add_argument("--max-parallel", type=int, metavar="N", help="job array: at most N tasks at once")
    res.add_argument("--sbatch", action="append", default=[], metavar="OPTION", dest="sbatch_options",
                     help="one more sbatch option, verbatim (repeatable), e.g. --sbatch=--mem=8G")
    ft = p.add_argument_group("checkpoints and preemption")
    ft.add_argument("--preemptible", action="store_true",
                    help="on USR1 before the time limit (or scancel --signal=USR1 --batch), checkpoint, "
                         "requeue and resume; the job completes when the work is done")
    ft.add_argument("--signal-seconds", type=int, default=DEFAULT_SIGNAL_S, metavar="S",
                    help=f"--preemptible: USR1 comes S seconds before the time limit (default {DEFAULT_SIGNAL_S}); "
                         "more than the run's --preempt-grace, to leave time for the checkpoint")
    ft.add_argument("--checkpoint", metavar="PATH",
                    help="checkpoint file (--preemptible default: <spec name>.ckpt.h5 in the submit folder)")
    ft.add_argument("--checkpoint-every", type=float, metavar="SECONDS", help="seconds between checkpoints")
    run = p.add_argument_group("the job")
    run.add_argument("--job-name", "-J", metavar="NAME", help="default: the spec's job name")
    run.add_argument("--run-args", default="", metavar="'OPTIONS'",
                     help="more `hpcmicro run` options, as one shell-quoted string, e.g. '--policy static'")
    run.add_argument("--mpi", default=DEFAULT_MPI, metavar="PLUGIN",
                     help=f"srun --mpi plugin (default {DEFAULT_MPI}: the MPICH wheel; Open MPI: pmix)")
    run.add_argument("--python", default=sys.executable, metavar="PATH",
                     help="the interpreter the job runs (default: this one)")
    run.add_argument("--script", metavar="PATH", help="where to write the script (default: <job name>.sbatch)")
    run.add_argument("--dry-run", action="store_true", help="print the script; write and submit nothing")
    p.set_defaults(handler=cmd_submit)
    return p


def cmd_submit(args: argparse.Namespace) -> int:
    try:
        opts = options_from_args(args)
        text = render(opts)
        if args.dry_run:
            sys.stdout.write(text)
            sys.stdout.flush()
            return EXIT_OK
        sbatch_path()  # no sbatch: say so before writing anything
        script = Path(args.script or f"{opts.job_name}.sbatch")
        try:
            script.write_text(text)
            script.chmod(0o755)
        except OSError as exc:
            raise SubmitError(f"cannot write {script}: {exc.strerror or exc}") from None
        job_id = submit(script)
    except SubmitError as exc:
        _say(f"hpcmicro: error: {exc}", sys.stderr)
        return EXIT_BAD_INPUT
    log = f"{opts.job_name}-{job_id}_*.out" if opts.is_array else f"{opts.job_name}-{job_id}.out"
    _say(f"hpcmicro: wrote {script}; submitted job {job_id}; log {log}", sys.stderr)
    _say(job_id, sys.stdout)
    return EXIT_OK


def options_from_args(args: argparse.Namespace) -> BatchOptions:
    """BatchOptions from the parsed command line; SubmitError for a bad spec or option."""
    from .jobspec import JobSpecError, load

    specs = []
    for path in args.specs:
        try:
            specs.append(load(path))
        except JobSpecError as exc:
            raise SubmitError(str(exc)) from None
    try:
        run_args = shlex.split(args.run_args)
    except ValueError as exc:
        raise SubmitError(f"--run-args {args.run_args!r}: {exc}") from None
    run = _check_run_args(args.specs[0], run_args)
    for flag in ("--checkpoint", "--checkpoint-every"):
        if any(a == flag or a.startswith(flag + "=") for a in run_args):
            if getattr(args, flag[2:].replace("-", "_")) is not None:
                raise SubmitError(f"{flag} is given twice (as an option and in --run-args)")
            if flag == "--checkpoint" and args.preemptible:
                raise SubmitError("with --preemptible, give the checkpoint as --checkpoint, not in --run-args")
    checkpoint = str(Path(args.checkpoint).resolve()) if args.checkpoint else None
    if not args.preemptible:  # a plain run passes them on to `hpcmicro run`
        if checkpoint:
            run_args += ["--checkpoint", checkpoint]
        if args.checkpoint_every:
            run_args += ["--checkpoint-every", f"{args.checkpoint_every:g}"]
    name = args.job_name or (specs[0].name if len(specs) == 1 else "hpcmicro-array")
    if args.job_name is None:
        name = re.sub(r"[^A-Za-z0-9_.+-]", "_", name) or "hpcmicro"
    kind = "array" if len(specs) > 1 else "gpu" if args.gpus else "preemptible" if args.preemptible else "cpu"
    from .. import __version__

    return BatchOptions(
        kind=kind, job_name=name, nodes=args.nodes, ntasks_per_node=args.ntasks_per_node, time=args.time,
        gpus_per_node=args.gpus, cpus_per_task=args.cpus_per_task, partition=args.partition,
        account=args.account, preemptible=args.preemptible, signal_s=args.signal_seconds,
        preempt_grace_s=run.preempt_grace if run is not None else DEFAULT_PREEMPT_GRACE_S,
        checkpoint=checkpoint if args.preemptible else None,
        checkpoint_every=args.checkpoint_every if args.preemptible else None, mpi=args.mpi,
        specs=[str(Path(s.path).resolve()) for s in specs], run_args=run_args, python=args.python,
        array_parallel=args.max_parallel, sbatch_options=list(args.sbatch_options),
        submitted_by=f"`hpcmicro submit` (hpcmicro {__version__})")


def _check_run_args(spec: str, run_args: list) -> argparse.Namespace | None:
    """``hpcmicro run`` must accept the extra options (checked here, not hours later in the job).

    Returns them parsed (None when there are none): the script's checks need some of them.
    """
    if not run_args:
        return None
    from .cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return build_parser().parse_args(["run", spec, *run_args])
    except SystemExit:
        lines = err.getvalue().strip().splitlines()
        reason = lines[-1].split("error: ", 1)[-1] if lines else "not accepted by hpcmicro run"
        raise SubmitError(f"--run-args: {reason}") from None


def _say(text, file) -> None:
    """Plain text: control characters (terminal escapes) replaced, so batch logs stay clean."""
    clean = "".join(c if c.isprintable() or c in "\n\t" else "?" for c in str(text))
    print(clean, file=file, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hpcmicro.app.submit ...``: the same as ``hpcmicro submit ...``."""
    parser = argparse.ArgumentParser(prog="hpcmicro")
    add_submit_parser(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(["submit", *(sys.argv[1:] if argv is None else argv)])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
