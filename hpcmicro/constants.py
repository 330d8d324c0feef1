"""Names and numbers that several layers share, defined once.

Nothing here imports anything: the engine, the CLI, the Slurm templates and the
tests all read these.
"""

from __future__ import annotations

__all__ = [
    "EXIT_OK", "EXIT_TASK_FAILED", "EXIT_BAD_INPUT", "EXIT_PREEMPTED", "EXIT_INTERRUPTED",
    "OP_NAMES", "POLICY_NAMES", "DEVICES", "ON_ERROR", "PROGRESS_MODES", "MPICH_ENV", "MASTER",
]

# Exit statuses of `hpcmicro run` (and of a script whose hm.Preempted is left uncaught).
EXIT_OK = 0
EXIT_TASK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: "try again later"; batch scripts requeue the job on it
EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C, after the same final checkpoint as a preemption

OP_NAMES = ("sum", "prod", "min", "max")  # the named reduction ops (engine/combine.py implements them)
POLICY_NAMES = ("static", "steal")  # engine/policies.py implements them
DEVICES = ("auto", "cpu", "gpu")
ON_ERROR = ("raise", "skip")
PROGRESS_MODES = (True, False, "auto", "lines")

MASTER = 0  # the rank that coordinates and runs no tasks

# Oversubscribed MPICH ranks poll hard; these make a polling rank yield its core
# (as mpi4py's own CI sets them). Exported by tests, benchmarks and batch scripts.
MPICH_ENV = {
    "MPIR_CVAR_CH4_PROGRESS_THROTTLE": "true",
    "MPIR_CVAR_POLLS_BEFORE_YIELD": "1",
}
