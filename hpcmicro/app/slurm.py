"""Slurm batch scripts for ``hpcmicro run``: rendering and submission.

One template, assembled from parts, gives every script: the examples in
``slurm/`` (``cpu.sbatch``, ``gpu.sbatch``, ``preemptible.sbatch``,
``array.sbatch``, written by :func:`write_examples`; a test keeps them in step)
and the scripts ``hpcmicro submit`` writes (docs/slurm.md).

The parts:

* ``#SBATCH`` lines from :class:`BatchOptions`;
* the environment (modules, virtual environment, ``PYTHON``) for the user to edit;
* which job spec: the script's arguments (``sbatch cpu.sbatch JOB.toml [run options]``),
  a spec written into the script (``hpcmicro submit``), or, for a job array, the
  ``SLURM_ARRAY_TASK_ID``-th of a list;
* the launch: ``srun --mpi=pmi2`` (the MPICH wheel's PMI), for GPUs through a
  binding that shows each rank only the ``SLURM_LOCALID``-th GPU of its node;
* the run: plain, or preemptible (forward ``--signal=B:USR1@N`` to the ranks,
  which checkpoint and exit 75, then ``scontrol requeue`` the job; the requeued
  job resumes from the checkpoint).

Nothing here imports MPI.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..constants import EXIT_PREEMPTED, MPICH_ENV
from .jobspec import OPTION_DEFAULTS

__all__ = ["BatchOptions", "SubmitError", "render", "example", "write_examples", "submit",
           "parse_time", "KINDS", "EXAMPLES", "GPU_BIND"]

KINDS = ("cpu", "gpu", "preemptible", "array")
DEFAULT_SIGNAL_S = 120  # --signal=B:USR1@120: two minutes to finish running tasks and write a checkpoint
# How long the ranks let running tasks finish after USR1 before the final checkpoint (the Runtime's
# preempt_grace): USR1 must come more than that, plus a checkpoint's write, before the time limit.
DEFAULT_PREEMPT_GRACE_S: float = OPTION_DEFAULTS["preempt_grace"]
DEFAULT_MPI = "pmi2"  # srun's PMI for the MPICH wheel and most MPICH builds; Open MPI: pmix

# Shows each rank only its GPU: the SLURM_LOCALID-th (modulo their number) of the GPUs
# Slurm gave the node (CUDA_VISIBLE_DEVICES); unset (no GPUs bound) leaves it unset, and
# hpcmicro then binds rank SLURM_LOCALID to device SLURM_LOCALID % visible devices.
GPU_BIND = (
    'if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then\n'
    '    IFS=, read -ra gpus <<< "$CUDA_VISIBLE_DEVICES"\n'
    '    export CUDA_VISIBLE_DEVICES=${gpus[SLURM_LOCALID % ${#gpus[@]}]}\n'
    'fi\n'
    'exec "$@"'
)

_TIME_RE = re.compile(r"^(?:(\d+)-(\d{1,2})(?::(\d{1,2})(?::(\d{1,2}))?)?|(\d+)(?::(\d{1,2})(?::(\d{1,2}))?)?)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")


class SubmitError(ValueError):
    """A bad option or a missing tool: ``hpcmicro submit`` prints it and exits 2."""


@dataclass
class BatchOptions:
    """What a batch script asks Slurm for and what it runs.

    ``ntasks_per_node`` None: every CPU of each node runs a rank (``--exclusive``),
    or, with GPUs, one rank per GPU. ``specs``: one spec, written into the script;
    several make a job array (one task each); none: the script takes the spec as
    its first argument (or, as an array, a list file). ``run_args``: more
    ``hpcmicro run`` options. ``python``: the interpreter's default
    (``HPCMICRO_PYTHON`` overrides it when the job runs).
    """

    kind: str = "cpu"
    job_name: str = "hpcmicro"
    nodes: int = 1
    ntasks_per_node: int | None = None
    time: str = "01:00:00"
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    partition: str | None = None
    account: str | None = None
    preemptible: bool = False
    signal_s: int = DEFAULT_SIGNAL_S
    preempt_grace_s: float = DEFAULT_PREEMPT_GRACE_S  # what the run is given (--preempt-grace), for the checks
    checkpoint: str | None = None
    checkpoint_every: float | None = None
    mpi: str = DEFAULT_MPI
    specs: list = field(default_factory=list)
    run_args: list = field(default_factory=list)
    python: str = "python3"
    array_parallel: int | None = None  # at most this many array tasks at once (--array=...%N)
    sbatch_options: list = field(default_factory=list)  # extra "#SBATCH" options, verbatim
    submitted_by: str | None = None  # who wrote the script, for its header; None: an example

    @property
    def is_array(self) -> bool:
        return self.kind == "array" or len(self.specs) > 1

    @property
    def uses_gpus(self) -> bool:
        return self.gpus_per_node > 0


# -- validation ---------------------------------------------------------------------------


def parse_time(text: str) -> int:
    """Seconds in a Slurm time limit: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    m = _TIME_RE.match(text.strip())
    if not m:
        raise SubmitError(f"--time {text!r}: not a Slurm time (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS)")
    d, h, mi, s, a, b, c = m.groups()
    if d is not None:
        return int(d) * 86400 + int(h) * 3600 + int(mi or 0) * 60 + int(s or 0)
    if c is not None:  # H:M:S
        return int(a) * 3600 + int(b) * 60 + int(c)
    if b is not None:  # M:S
        return int(a) * 60 + int(b)
    return int(a) * 60  # minutes


def validate(opts: BatchOptions) -> None:
    """Raise SubmitError naming the first bad option."""
    if opts.kind not in KINDS:
        raise SubmitError(f"kind must be one of {', '.join(KINDS)}, got {opts.kind!r}")
    if not _NAME_RE.match(opts.job_name):
        raise SubmitError(f"--job-name {opts.job_name!r}: use letters, digits and _.+- only")
    for name, value, low in (("--nodes", opts.nodes, 1), ("--ntasks-per-node", opts.ntasks_per_node, 1),
                             ("--gpus", opts.gpus_per_node, 0), ("--cpus-per-task", opts.cpus_per_task, 1),
                             ("--max-parallel", opts.array_parallel, 1)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
            raise SubmitError(f"{name} must be an integer >= {low}, got {value!r}")
    limit = parse_time(opts.time)
    if limit <= 0:
        raise SubmitError(f"--time {opts.time!r}: the time limit must be positive")
    if opts.preemptible:
        if not 1 <= opts.signal_s <= 65535:
            raise SubmitError(f"--signal-seconds must be in 1..65535, got {opts.signal_s}")
        if opts.signal_s >= limit:
            raise SubmitError(f"--signal-seconds {opts.signal_s} is not less than the time limit "
                              f"({opts.time} = {limit} s): the warning would come before the job starts")
        if opts.signal_s <= opts.preempt_grace_s:
            raise SubmitError(f"--signal-seconds {opts.signal_s} leaves no time for the checkpoint: running "
                              f"tasks get up to {opts.preempt_grace_s:g} s (--preempt-grace) before it is written")
    if opts.checkpoint_every is not None and not opts.checkpoint_every > 0:
        raise SubmitError(f"--checkpoint-every must be > 0, got {opts.checkpoint_every}")
    if not re.match(r"^[a-z0-9_]+$", opts.mpi):
        raise SubmitError(f"--mpi {opts.mpi!r}: a plugin name such as pmi2 or pmix (see `srun --mpi=list`)")
    for text, what in ((opts.partition, "--partition"), (opts.account, "--account")):
        if text is not None and not _NAME_RE.match(text.replace(",", "")):
            raise SubmitError(f"{what} {text!r}: not a Slurm name")
    for option in opts.sbatch_options:
        if not option.startswith("-") or "\n" in option:
            raise SubmitError(f"--sbatch {option!r}: give one sbatch option such as --mem=4G")
    if opts.is_array and opts.checkpoint is not None:
        raise SubmitError("--checkpoint names one file; a job array gives each task its own "
                          "(<spec name>.ckpt.h5); leave --checkpoint out")


# -- rendering ----------------------------------------------------------------------------


def _q(value) -> str:
    return shlex.quote(str(value))


def _header(opts: BatchOptions) -> str:
    if opts.submitted_by is not None:
        return (f"# Written by {opts.submitted_by}.\n"
                "# Submit it again with `sbatch` to rerun; docs/slurm.md says what each part does.\n")
    what = {
        "cpu": ("CPU job: MPI ranks on CPU cores; rank 0 coordinates, the others run tasks.",
                "sbatch slurm/cpu.sbatch JOB.toml [hpcmicro run options]"),
        "gpu": ("GPU job: one rank per GPU; each rank sees only the SLURM_LOCALID-th GPU of its node.",
                "sbatch slurm/gpu.sbatch JOB.toml [hpcmicro run options]"),
        "preemptible": ("preemptible job: on USR1 (sent N s before the time limit, or by scancel) the run\n"
                        f"# checkpoints and exits {EXIT_PREEMPTED}, this script requeues the job, and the requeued"
                        " job\n# resumes from the checkpoint. The job ends COMPLETED only when the work is done.",
                        "sbatch slurm/preemptible.sbatch JOB.toml [hpcmicro run options]"),
        "array": ("job array: many independent runs from one submission, one job spec per array task.",
                  "sbatch --array=0-2 slurm/array.sbatch a.toml b.toml c.toml   # task i runs argument i\n"
                  "#   sbatch --array=0-99%10 slurm/array.sbatch runs.txt           # task i runs line i"),
    }[opts.kind if not opts.preemptible or opts.kind == "array" else "preemptible"]
    change = {
        "cpu": "--ntasks-per-node: the cores of a node (rank 0 mostly sleeps: one more is fine)",
        "gpu": "--gpus-per-node and --ntasks-per-node: equal (one rank per GPU); --cpus-per-task",
        "preemptible": "--signal=B:USR1@N: N seconds for the running tasks and the checkpoint",
        "array": "--array: the task ids (and %N for at most N at once); --ntasks-per-node per task",
    }[opts.kind]
    lines = [f"# hpcmicro: {what[0]}", "#", f"#   {what[1]}", "#",
             "# Change before use:",
             "#   - the #SBATCH lines: --time, --nodes, --partition and --account (uncomment),",
             f"#     {change};",
             "#   - the environment block below: your modules and your virtual environment;",
             f"#   - --mpi={opts.mpi} in the srun line suits the MPICH wheel (pip install mpich) and most",
             "#     MPICH builds; Open MPI usually wants --mpi=pmix (`srun --mpi=list` shows what you have)."]
    if opts.kind == "array":
        lines += ["# Array task N runs argument N when the arguments are job specs, or line N of a",
                  "# list file whose lines read `JOB.toml [hpcmicro run options]` (words split at",
                  "# blanks, no quoting; blank and # lines do not count). Both count from 0.",
                  "# Give runs of the same spec their own --output."]
    return "\n".join(lines) + "\n"


def _sbatch_lines(opts: BatchOptions) -> str:
    out = "%x-%A_%a.out" if opts.is_array else "%x-%j.out"
    lines = [f"--job-name={opts.job_name}", f"--nodes={opts.nodes}"]
    if opts.ntasks_per_node is not None:
        lines.append(f"--ntasks-per-node={opts.ntasks_per_node}")
    elif opts.uses_gpus:
        lines.append(f"--ntasks-per-node={opts.gpus_per_node}")
    else:
        lines += ["# every CPU of each node runs a rank (srun --ntasks-per-node=$SLURM_CPUS_ON_NODE)",
                  "--exclusive"]
    if opts.uses_gpus:
        lines.append(f"--gpus-per-node={opts.gpus_per_node}")
    if opts.cpus_per_task is not None:
        lines.append(f"--cpus-per-task={opts.cpus_per_task}")
    lines.append(f"--time={opts.time}")
    if opts.is_array:
        n = len(opts.specs)
        if n > 1:
            lines.append(f"--array=0-{n - 1}" + (f"%{opts.array_parallel}" if opts.array_parallel else ""))
    if opts.preemptible:
        lines += [f"# USR1 to this script {opts.signal_s} s before the time limit; it may be requeued; a",
                  "# requeued job appends to the same log",
                  f"--signal=B:USR1@{opts.signal_s}", "--requeue", "--open-mode=append"]
    lines.append(f"--output={out}")
    lines += opts.sbatch_options
    text = "".join(line + "\n" if line.startswith("#") else f"#SBATCH {line}\n" for line in lines)
    for name, value in (("partition", opts.partition), ("account", opts.account)):
        text += f"#SBATCH --{name}={value}\n" if value else f"##SBATCH --{name}=CHANGE_ME\n"
    return text


def _environment(opts: BatchOptions) -> str:
    return f"""
set -uo pipefail

# -- environment: edit for your site ------------------------------------------------------
# module load python/3.11          # your site's Python, if it comes as a module
# module load openmpi              # the MPI that mpi4py was built against (not with the mpich wheel)
# source "$HOME/venvs/hpcmicro/bin/activate"   # the environment where hpcmicro is installed
PYTHON=${{HPCMICRO_PYTHON:-{_q(opts.python)}}}   # HPCMICRO_PYTHON overrides (the tests set it)
export PYTHONUNBUFFERED=1          # log lines appear as they happen
# More ranks on a node than cores (a laptop, CI): let waiting MPICH ranks yield the core.
# export {" ".join(f"{name}={value}" for name, value in MPICH_ENV.items())}
"""


def _spec_selection(opts: BatchOptions) -> str:
    script = f"{opts.kind}.sbatch"
    if opts.is_array:
        if opts.specs:
            items = " ".join(_q(s) for s in opts.specs)
            source = f"SPECS=({items})\nRUN_ARGS=({' '.join(_q(a) for a in opts.run_args)})\n"
            pick = 'JOB_SPEC=${SPECS[$SLURM_ARRAY_TASK_ID]:?no spec for array task $SLURM_ARRAY_TASK_ID}\n'
            return f"\n# -- which run: array task i runs spec i ------------------------------------------------\n{source}{pick}"
        return f"""
# -- which run: array task N runs argument N (job specs) or line N of a list file (from 0) --
: "${{SLURM_ARRAY_TASK_ID:?submit with --array, e.g. sbatch --array=0-2 {script} a.toml b.toml c.toml}}"
[ $# -gt 0 ] || {{ echo "usage: sbatch --array=... {script} JOB.toml... | LIST.txt" >&2; exit 2; }}
RUN_ARGS=()
if [ $# -eq 1 ] && [[ $1 != *.toml ]]; then    # a list file: line N (from 0) is `JOB.toml [options]`
    line=$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$1" | sed -n "$((SLURM_ARRAY_TASK_ID + 1))p")
    [ -n "$line" ] || {{ echo "hpcmicro: no line $SLURM_ARRAY_TASK_ID in $1 (lines count from 0)" >&2; exit 2; }}
    read -ra words <<< "$line"
    JOB_SPEC=${{words[0]}}
    RUN_ARGS=("${{words[@]:1}}")
else                                            # job specs: argument N (from 0)
    specs=("$@")
    [ "$SLURM_ARRAY_TASK_ID" -lt ${{#specs[@]}} ] || {{ echo "hpcmicro: no spec for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2; }}
    JOB_SPEC=${{specs[$SLURM_ARRAY_TASK_ID]}}
fi
"""
    if opts.specs:
        return (f"\n# -- which run --------------------------------------------------------------------------\n"
                f"JOB_SPEC={_q(opts.specs[0])}\n"
                f"RUN_ARGS=({' '.join(_q(a) for a in opts.run_args)})\n")
    return f"""
# -- which run: the job spec and `hpcmicro run` options are this script's arguments --------
JOB_SPEC=${{1:?usage: sbatch {script} JOB.toml [hpcmicro run options]}}
shift
RUN_ARGS=("$@")
"""


def _launch(opts: BatchOptions) -> str:
    tasks = "" if (opts.ntasks_per_node is not None or opts.uses_gpus) else ' --ntasks-per-node="$SLURM_CPUS_ON_NODE"'
    if opts.uses_gpus:
        return (f"\n# One rank per GPU: rank SLURM_LOCALID of a node sees only that GPU of the node's GPUs.\n"
                f"BIND_GPU='\n{GPU_BIND}'\n"
                f"LAUNCH=(srun --mpi={opts.mpi}{tasks} bash -c \"$BIND_GPU\" bind-gpu)\n")
    return f"\nLAUNCH=(srun --mpi={opts.mpi}{tasks})\n"


def _checkpoint_args(opts: BatchOptions) -> str:
    every = f" --checkpoint-every {opts.checkpoint_every:g}" if opts.checkpoint_every else ""
    if opts.checkpoint:
        default = _q(opts.checkpoint)
    elif opts.is_array:
        default = '"$(basename "$JOB_SPEC" .toml).task$SLURM_ARRAY_TASK_ID.ckpt.h5"'
    else:
        default = '"$(basename "$JOB_SPEC" .toml).ckpt.h5"'
    where = "<spec name>.task<N>.ckpt.h5" if opts.is_array else "<spec name>.ckpt.h5"
    return (f"# The checkpoint (HPCMICRO_CHECKPOINT overrides; default: {where} here).\n"
            f"CHECKPOINT=${{HPCMICRO_CHECKPOINT:-{default}}}\n"
            f"CKPT_ARGS=(--checkpoint \"$CHECKPOINT\"{every})\n")


_RUN_PLAIN = """
echo "hpcmicro: job ${SLURM_JOB_ID}${SLURM_ARRAY_TASK_ID:+ (array task $SLURM_ARRAY_TASK_ID)} on ${SLURM_JOB_NODELIST}: $JOB_SPEC ${RUN_ARGS[*]}"
"${LAUNCH[@]}" "$PYTHON" -m hpcmicro run "$JOB_SPEC" "${RUN_ARGS[@]}"
"""

# @PREEMPTED@ and @GRACE@ are filled in by _run_preemptible (str.format would trip over bash's braces).
_RUN_PREEMPTIBLE = """
# A requeued job must resume, not start afresh: drop --fresh after the first start.
if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then
    kept=(); for a in "${RUN_ARGS[@]}"; do [ "$a" = --fresh ] || kept+=("$a"); done; RUN_ARGS=("${kept[@]}")
fi
# Which job to requeue (an array task has its own id).
SELF=${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}
SELF=${SELF:-$SLURM_JOB_ID}
echo "hpcmicro: job $SELF start ${SLURM_RESTART_COUNT:-0} on ${SLURM_JOB_NODELIST} at $(date '+%F %T'): $JOB_SPEC ${RUN_ARGS[*]}; checkpoint $CHECKPOINT"

# USR1 (--signal=B:USR1@N, or scancel --signal=USR1 --batch) reaches this shell only: pass
# it on to the ranks (srun forwards it), which let running tasks finish (up to @GRACE@ s, --preempt-grace),
# write a checkpoint and exit @PREEMPTED@. TERM (scancel, scontrol requeue, the time limit) reaches every
# process; the ranks checkpoint, and this script must not requeue on its own then.
preempted=0 terminated=0 step=
on_usr1() { preempted=1; echo "hpcmicro: USR1 at $(date '+%T'): checkpoint and stop"; [ -z "$step" ] || kill -USR1 "$step" 2>/dev/null; }
on_term() { terminated=1; echo "hpcmicro: TERM at $(date '+%T')"; }
trap on_usr1 USR1
trap on_term TERM

"${LAUNCH[@]}" "$PYTHON" -m hpcmicro run "$JOB_SPEC" "${CKPT_ARGS[@]}" "${RUN_ARGS[@]}" &
step=$!
[ "$preempted" -eq 0 ] || kill -USR1 "$step" 2>/dev/null    # USR1 came before the step started
while :; do   # a trapped signal interrupts `wait` (status > 128) while the step still runs
    wait "$step"; status=$?
    [ "$status" -gt 128 ] && kill -0 "$step" 2>/dev/null && continue
    break
done

if [ "$status" -eq 0 ]; then
    echo "hpcmicro: done at $(date '+%F %T') after ${SLURM_RESTART_COUNT:-0} requeue(s)"
    rm -f "$CHECKPOINT"   # the result is in the output file; a later run of the spec starts afresh
    exit 0
fi
# @PREEMPTED@: checkpointed on request. Killed by USR1 (138: it came before hpcmicro was listening), or by
# any signal after our USR1: resume from the last checkpoint.
if [ "$terminated" -eq 0 ] && { [ "$status" -eq @PREEMPTED@ ] || [ "$status" -eq 138 ] ||
                                { [ "$preempted" -eq 1 ] && [ "$status" -gt 128 ]; }; }; then
    echo "hpcmicro: step exited $status; requeueing job $SELF"
    if scontrol requeue "$SELF"; then
        if [ "$terminated" -eq 0 ]; then   # Slurm ends this script (TERM) as the job goes back to the queue
            sleep 60 & wait $!
            kill $! 2>/dev/null
        fi
        exit 0
    fi
    echo "hpcmicro: scontrol requeue failed; resubmit with the same checkpoint to resume" >&2
fi
echo "hpcmicro: step exited $status"
exit "$status"
"""


def _run_preemptible(opts: BatchOptions) -> str:
    return (_RUN_PREEMPTIBLE.replace("@PREEMPTED@", str(EXIT_PREEMPTED))
            .replace("@GRACE@", f"{opts.preempt_grace_s:g}"))


def render(opts: BatchOptions) -> str:
    """The batch script for ``opts`` (validated)."""
    validate(opts)
    parts = ["#!/bin/bash\n", _header(opts), _sbatch_lines(opts), _environment(opts), _spec_selection(opts),
             _launch(opts)]
    if opts.preemptible:
        parts += ["\n", _checkpoint_args(opts), _run_preemptible(opts)]
    else:
        parts.append(_RUN_PLAIN)
    return "".join(parts)


# -- the examples in slurm/ ----------------------------------------------------------------

EXAMPLES = {
    "cpu.sbatch": BatchOptions(kind="cpu", ntasks_per_node=4, time="00:30:00"),
    "gpu.sbatch": BatchOptions(kind="gpu", gpus_per_node=4, ntasks_per_node=4, cpus_per_task=8, time="01:00:00"),
    "preemptible.sbatch": BatchOptions(kind="preemptible", preemptible=True, ntasks_per_node=4, time="04:00:00",
                                       signal_s=DEFAULT_SIGNAL_S),
    "array.sbatch": BatchOptions(kind="array", ntasks_per_node=4, time="00:30:00"),
}


def example(name: str) -> str:
    """The text of ``slurm/<name>`` as this version renders it."""
    return render(EXAMPLES[name])


def write_examples(folder: str | os.PathLike) -> list[Path]:
    """(Re)write the example scripts into ``folder`` (``python -m hpcmicro.app.slurm slurm/``)."""
    folder = Path(folder)
    written = []
    for name in EXAMPLES:
        path = folder / name
        path.write_text(example(name))
        path.chmod(0o755)
        written.append(path)
    return written


# -- submission ---------------------------------------------------------------------------


def sbatch_path() -> str:
    found = shutil.which("sbatch")
    if found is None:
        raise SubmitError("sbatch not found: submit on a Slurm login node, or try the scripts on a local "
                          "cluster (slurm/local-cluster.sh start); --dry-run prints the script without it")
    return found


def submit(script_path: str | os.PathLike, sbatch_args: Sequence[str] = (), cwd: str | os.PathLike | None = None,
           timeout: float = 60) -> str:
    """``sbatch --parsable SCRIPT``; returns the job id. SubmitError when sbatch is missing or refuses."""
    argv = [sbatch_path(), "--parsable", *sbatch_args, str(script_path)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SubmitError(f"sbatch did not answer within {timeout} s (is slurmctld up? `sinfo`)") from None
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        raise SubmitError(f"sbatch refused the job: {message}")
    job_id = done.stdout.strip().split(";")[0]  # --parsable: "id" or "id;cluster"
    if not job_id:
        raise SubmitError(f"sbatch printed no job id: {done.stdout!r}")
    return job_id


def _main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hpcmicro.app.slurm FOLDER   (rewrites the example scripts there)", file=sys.stderr)
        return 2
    for path in write_examples(args[0]):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
