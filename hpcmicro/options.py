"""Runtime options: one frozen object, validated once.

``hm.Runtime(**kwargs)`` builds an ``Options``; the CLI and the Slurm templates
read the same fields (``FIELDS`` lists them with their help text), so a default
or a check lives in one place.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

from .constants import DEVICES, ON_ERROR, POLICY_NAMES, PROGRESS_MODES
from .errors import InvalidCall

__all__ = ["Options", "HELP"]

# One line per option: the Runtime docstring, `hpcmicro run --help` and the docs say the same.
HELP = {
    "policy": f"scheduling policy: {' or '.join(POLICY_NAMES)} (static: fixed contiguous shares, no balancing)",
    "capacity": "this rank's relative speed: shares of work are proportional to it",
    "abort_on_error": "an exception leaving the Runtime on one rank only aborts the MPI job instead of hanging it",
    "checkpoint": "HDF5 checkpoint path (None: no checkpoint)",
    "checkpoint_every": "seconds between checkpoints",
    "resume": "continue from an existing checkpoint (False: start afresh)",
    "retries": "extra tries for a task that raises",
    "on_error": "after the last try: raise (TaskError) or skip (record the task and go on)",
    "task_timeout": "seconds after which a running task is handed to another worker (None: never)",
    "preempt_grace": "seconds running tasks get to finish after SIGTERM/SIGUSR1 before the final checkpoint",
    "device": f"where kernels run: {', '.join(DEVICES)}",
    "device_memory_limit": "a cap on each GPU rank's memory pool (bytes, or a fraction of the device)",
    "progress": "progress display on rank 0: auto (bar on a terminal, lines in a log), lines, True or False",
    "progress_every": "seconds between progress lines in a batch log",
    "trace": "write a Chrome-trace timeline of every call to this path",
    "group_size": "two-level scheduling: workers per group master (an integer), 'node' (one group per node), "
                  "'auto' (one master below 1,024 workers, else groups), or 0/None/'off' (one master); "
                  "default: $HPCMICRO_GROUP_SIZE, else auto",
    "inprocess_workers": "worker threads when the job has one rank (plain python): the same engine in one process; "
                         "default: $HPCMICRO_INPROCESS_WORKERS, else 1",
}


def _positive(value: Any, name: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool):
        raise InvalidCall(f"{name} must be a positive number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidCall(f"{name} must be a positive number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidCall(f"{name} must be a finite number, got {value!r}")
    if not (number > 0 or (allow_zero and number == 0)):
        raise InvalidCall(f"{name} must be a positive number, got {value!r}")
    return number


def _path(value: Any, name: str) -> str | None:
    """A path option as a str (None stays None); InvalidCall for a non-path or an empty one."""
    if value is None:
        return None
    try:
        text = os.fspath(value)
    except TypeError:
        raise InvalidCall(f"{name} must be a path (str or os.PathLike), got {value!r}") from None
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text.strip():
        raise InvalidCall(f"{name} must be a non-empty path, got {value!r}")
    return text


def _trace_problem(path: str) -> str | None:
    """Why a trace cannot be written at ``path`` (its folder is missing or not writable), or None."""
    full = os.path.abspath(path)
    folder = os.path.dirname(full)
    if os.path.isdir(full):
        return f"trace {path} is a folder"
    if not os.path.isdir(folder):
        return f"trace {path}: folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"trace {path}: folder {folder} is not writable"
    return None


def _count(value: Any, name: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidCall(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _group_size(value: Any):
    """"auto", "node", a count of members per group, or None (one master: 0, None, "off")."""
    if value in (None, 0, "off", "none"):
        return None
    if value in ("auto", "node"):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidCall(f"group_size must be 'auto', 'node', 'off' or an integer >= 1, got {value!r}")
    return value


def _env_count(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        return int(text)
    except ValueError:
        raise InvalidCall(f"${name} must be an integer, got {text!r}") from None


@dataclass(frozen=True)
class Options:
    """Everything a Runtime is configured with; see ``HELP`` for each field."""

    policy: Any = "steal"  # a name in POLICY_NAMES or an engine.policies.Policy instance
    capacity: float = 1.0
    abort_on_error: bool = True
    checkpoint: str | None = None
    checkpoint_every: float = 60.0
    resume: bool = True
    retries: int = 0
    on_error: str = "raise"
    task_timeout: float | None = None
    preempt_grace: float = 10.0
    device: str = "auto"
    device_memory_limit: Any = None
    progress: Any = "auto"
    progress_every: float = 30.0
    trace: str | None = None
    group_size: Any = dataclasses.field(default_factory=lambda: os.environ.get("HPCMICRO_GROUP_SIZE") or "auto")
    inprocess_workers: int = dataclasses.field(default_factory=lambda: _env_count("HPCMICRO_INPROCESS_WORKERS", 1))

    def __post_init__(self) -> None:
        from .engine.policies import get_policy

        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (frozen)
        fix("policy", get_policy(self.policy))
        fix("capacity", _positive(self.capacity, "capacity"))
        fix("abort_on_error", bool(self.abort_on_error))
        fix("checkpoint", _path(self.checkpoint, "checkpoint"))
        fix("checkpoint_every", _positive(self.checkpoint_every, "checkpoint_every"))
        fix("resume", bool(self.resume))
        fix("retries", _count(self.retries, "retries", 0))
        if self.on_error not in ON_ERROR:
            raise InvalidCall(f"on_error must be one of {', '.join(ON_ERROR)}, got {self.on_error!r}")
        if self.task_timeout is not None:
            fix("task_timeout", _positive(self.task_timeout, "task_timeout"))
        fix("preempt_grace", _positive(self.preempt_grace, "preempt_grace", allow_zero=True))
        if self.device not in DEVICES:
            raise InvalidCall(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.progress not in PROGRESS_MODES:
            raise InvalidCall(f"progress must be True, False, 'auto' or 'lines', got {self.progress!r}")
        fix("progress_every", _positive(self.progress_every, "progress_every"))
        fix("trace", _path(self.trace, "trace"))
        if self.trace is not None and (problem := _trace_problem(self.trace)) is not None:
            raise InvalidCall(problem)
        fix("group_size", _group_size(self.group_size))
        fix("inprocess_workers", _count(self.inprocess_workers, "inprocess_workers", 1))

    def replace(self, **changes: Any) -> "Options":
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))
