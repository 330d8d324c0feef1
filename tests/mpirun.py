"""Run an MPI scenario in its own mpiexec, under a timeout, and read what it reports.

Each multi-rank test starts its own job: a failure on one rank can then never
leave the other ranks of another test waiting, and a hang is killed whole.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from hpcmicro.constants import MPICH_ENV

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = Path(__file__).resolve().parent / "multirank" / "scenarios.py"

# Oversubscribed MPICH ranks should yield the core while they poll; ranks' lines come at once.
MPI_ENV = {**MPICH_ENV, "PYTHONUNBUFFERED": "1"}


def mpiexec() -> str:
    exe = shutil.which("mpiexec")
    if exe is None:
        raise RuntimeError("mpiexec not found: pip install 'hpcmicro[mpich]'")
    return exe


class MPIRun:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    def reports(self) -> list:
        """Every JSON line a rank printed, as dicts."""
        # Ranks share one stdout and their lines can run together, so find
        # each report by its opening rather than by line.
        decoder, out, text, pos = json.JSONDecoder(), [], self.stdout, 0
        while (pos := text.find('{"rank": ', pos)) >= 0:
            obj, end = decoder.raw_decode(text, pos)
            out.append(obj)
            pos = end
        return out

    def report(self) -> dict:
        """The one report rank 0 printed."""
        found = [r for r in self.reports() if r.get("rank") == 0]
        if len(found) != 1:
            raise AssertionError(f"expected one rank-0 report, got {len(found)}\n{self}")
        return found[0]

    def __str__(self):
        return f"exit {self.returncode}\n--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}"


def descendants(pid: int) -> list:
    """pid and every process below it (read from /proc), parents first."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def kill_job(pid: int) -> None:
    """SIGKILL an mpiexec and every rank it started, all at once.

    MPICH's proxy puts each rank in its own session and, if mpiexec alone dies,
    sends the ranks SIGTERM, which hpcmicro takes as a preemption (a graceful
    stop with a final checkpoint). A crash test must not get that courtesy:
    stop the whole tree first so nobody reacts, then kill it.
    """
    tree = descendants(pid)
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for p in tree:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass


def run_command(argv, timeout=120, env=None, cwd=None) -> MPIRun:
    full_env = dict(os.environ, **MPI_ENV)
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), full_env.get("PYTHONPATH", "")])
    if env:
        full_env.update(env)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full_env, cwd=cwd or ROOT, start_new_session=True)
    return finish(proc, timeout, what=" ".join(map(str, argv)))


def finish(proc: subprocess.Popen, timeout: float, what: str = "job") -> MPIRun:
    """Wait for a started job; past ``timeout`` kill it and every rank, and fail with its output."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_job(proc.pid)
        out, err = proc.communicate()
        raise AssertionError(f"timed out after {timeout}s: {what}\n{MPIRun(None, out, err)}") from None
    return MPIRun(proc.returncode, out, err)


def run_scenario(ranks: int, name: str, timeout: float = 120, env=None, **params) -> MPIRun:
    argv = [mpiexec(), "-n", str(ranks), sys.executable, str(SCENARIOS), name, json.dumps(params)]
    return run_command(argv, timeout=timeout, env=env)


def run_scenario_inprocess(ranks: int, name: str, timeout: float = 120, **params) -> MPIRun:
    """The same scenario in one process: plain python, with ``ranks - 1`` in-process workers."""
    argv = [sys.executable, str(SCENARIOS), name, json.dumps(params)]
    return run_command(argv, timeout=timeout, env={"HPCMICRO_INPROCESS_WORKERS": str(ranks - 1)})


class MPIRanks:
    """Mixin: scenarios run under ``mpiexec -n N``; every rank reports."""

    transport = "mpi"

    def run(self, ranks, name, timeout=120, **params) -> MPIRun:
        return run_scenario(ranks, name, timeout=timeout, **params)

    def callers(self, n) -> list:
        """The ranks that call the runtime (and print reports)."""
        return list(range(n))

    def task_ranks(self, n) -> set:
        """The ranks a kernel can run on (``hm.context().rank``, ``TaskError.rank``)."""
        return set(range(1, n))


class InProcess:
    """Mixin: the same scenarios in one process, N-1 workers on threads; rank 0 alone reports."""

    transport = "inproc"

    def run(self, ranks, name, timeout=120, **params) -> MPIRun:
        return run_scenario_inprocess(ranks, name, timeout=timeout, **params)

    def callers(self, n) -> list:
        return [0]

    def task_ranks(self, n) -> set:
        return {0}
