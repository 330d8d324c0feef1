"""Helpers for the tests in tests/slurm/: find or start a cluster, submit, wait, diagnose."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hpcmicro.constants import MPICH_ENV

ROOT = Path(__file__).resolve().parents[2]
SLURM_DIR = ROOT / "slurm"
LOCAL_CLUSTER = SLURM_DIR / "local-cluster.sh"
LOCAL_CONF = Path(os.environ.get("HPCMICRO_SLURM_DIR", "/var/tmp/hpcmicro-slurm")) / "slurm.conf"

# What the jobs need from the test process: this interpreter, and MPICH ranks that yield
# their core while they wait (the test node offers more CPUs than it has cores).
JOB_ENV = {"HPCMICRO_PYTHON": sys.executable, **MPICH_ENV}

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
            "DEADLINE", "PREEMPTED"}
# Pending for one of these reasons means never: fail at once rather than at the timeout.
HOPELESS = ("PartitionConfig", "BadConstraints", "PartitionNodeLimit", "ReqNodeNotAvail", "InvalidQOS",
            "InvalidAccount", "JobHeldAdmin", "JobHeldUser")


# -- the cluster --------------------------------------------------------------------------


@dataclass
class Cluster:
    env: dict  # the environment for sbatch & co. (SLURM_CONF when needed) and for the jobs
    cpus: int  # CPUs of the (first) node
    gpus: int  # GRES gpu of the (first) node
    partition: str
    started_here: bool = False
    notes: list = field(default_factory=list)

    @property
    def ranks(self) -> int:
        """Ranks per job: 4 (one master, three workers) where the node offers that many CPUs."""
        return max(1, min(4, self.cpus))


def _run(argv, env, timeout=20):
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 124, "", f"{type(exc).__name__}: {exc}")


def _answering_env():
    """An environment in which ``sinfo`` answers (with SLURM_CONF if that is what it takes), or None."""
    env = dict(os.environ)
    candidates = [env]
    if "SLURM_CONF" not in env and LOCAL_CONF.exists():
        candidates.append(dict(env, SLURM_CONF=str(LOCAL_CONF)))
    for candidate in candidates:
        if _run(["sinfo", "-h", "-o", "%P"], candidate, timeout=15).returncode == 0:
            return candidate
    return None


def _node(env):
    """(cpus, gpus, partition) of the default partition's first node that can run jobs."""
    out = _run(["sinfo", "-h", "-N", "-o", "%P|%T|%c|%G"], env).stdout
    best = None
    for line in out.splitlines():
        part, state, cpus, gres = line.split("|")
        if not re.match(r"^(idle|mix|alloc|comp)", state):
            continue
        m = re.search(r"gpu(?::[^:,(]+)?:(\d+)", gres)
        node = (int(cpus.rstrip("+")), int(m.group(1)) if m else 0, part.rstrip("*"))
        if best is None or part.endswith("*"):
            best = node
    return best


def find_or_start_cluster():
    if os.environ.get("HPCMICRO_SLURM_TESTS", "1") == "0":
        pytest.skip("HPCMICRO_SLURM_TESTS=0")
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        pytest.skip("Slurm is not installed (sbatch, sinfo); to run these tests: .ci/slurm-setup.sh "
                    "(apt-get install slurmctld slurmd slurm-client munge; slurm/local-cluster.sh start)")
    started, notes = False, []
    env = _answering_env()
    if env is None:
        if os.environ.get("HPCMICRO_SLURM_AUTOSTART", "1") == "0":
            pytest.skip("no Slurm cluster answers sinfo (HPCMICRO_SLURM_AUTOSTART=0); "
                        "start one with slurm/local-cluster.sh start")
        if os.geteuid() != 0:
            pytest.skip("no Slurm cluster answers sinfo, and starting the local one needs root: "
                        "sudo slurm/local-cluster.sh start")
        if shutil.which("slurmctld") is None and not Path("/usr/sbin/slurmctld").exists():
            pytest.skip("no Slurm cluster answers sinfo, and slurmctld/slurmd are not installed: "
                        "apt-get install slurmctld slurmd slurm-client munge")
        start_env = dict(os.environ)
        if not any(Path(p).exists() for p in ("/dev/nvidia0",)):
            start_env.setdefault("HPCMICRO_SLURM_GPUS", "2")  # stand-in GPUs, for the gpu.sbatch test
        done = _run(["bash", str(LOCAL_CLUSTER), "start"], start_env, timeout=180)
        if done.returncode != 0:
            pytest.skip(f"could not start the local Slurm cluster: {(done.stdout + done.stderr).strip()[-1500:]}")
        started = True
        notes.append("started the local cluster (slurm/local-cluster.sh stop ends it)")
        env = _answering_env()
        if env is None:
            pytest.skip("started the local Slurm cluster, but sinfo does not answer")
    node = None
    deadline = time.monotonic() + 60
    while node is None and time.monotonic() < deadline:
        node = _node(env)
        if node is None:
            time.sleep(1)
    if node is None:
        out = _run(["sinfo", "-N", "-l"], env).stdout
        pytest.skip(f"the Slurm cluster has no node that can run jobs:\n{out}")
    cpus, gpus, partition = node
    return Cluster(env=dict(env, **JOB_ENV), cpus=cpus, gpus=gpus, partition=partition,
                   started_here=started, notes=notes)


# -- jobs ---------------------------------------------------------------------------------


@dataclass
class JobRecord:
    job_id: str
    state: str
    exit_code: str  # "status:signal"
    restarts: int
    reason: str
    fields: dict

    @property
    def status(self) -> int:
        return int(self.exit_code.split(":")[0])


def job_records(cluster, job_id) -> list:
    """Every record of ``job_id`` (one per array task) from ``scontrol show job -o``."""
    done = _run(["scontrol", "show", "job", "-o", str(job_id)], cluster.env)
    if done.returncode != 0:
        return []
    records = []
    for line in done.stdout.splitlines():
        fields = dict(re.findall(r"(\w[\w/:]*)=(\S*)", line))
        if "JobId" not in fields:
            continue
        records.append(JobRecord(fields["JobId"], fields.get("JobState", "?"), fields.get("ExitCode", "0:0"),
                                 int(fields.get("Restarts", "0") or 0), fields.get("Reason", ""), fields))
    return records


def diagnostics(cluster, job_id, folder) -> str:
    """Logs and Slurm's view of a job, for an assertion message."""
    parts = [f"--- scontrol show job {job_id}",
             _run(["scontrol", "show", "job", str(job_id)], cluster.env).stdout.strip(),
             "--- squeue", _run(["squeue"], cluster.env).stdout.strip()]
    for log in sorted(Path(folder).glob("*.out")):
        parts += [f"--- {log}", log.read_text(errors="replace")[-4000:]]
    slurmd_log = LOCAL_CONF.parent / "log" / "slurmd.log"
    if slurmd_log.exists():
        tail = slurmd_log.read_text(errors="replace").splitlines()[-15:]
        parts += [f"--- last lines of {slurmd_log}", "\n".join(tail)]
    return "\n".join(parts)


def sbatch(cluster, script, args=(), sbatch_args=(), cwd=None, env=None) -> str:
    """Submit ``script`` (with ``args``) from ``cwd``, the jobs getting ``env`` too; the job id."""
    argv = ["sbatch", "--parsable", f"--partition={cluster.partition}", *sbatch_args, str(script), *map(str, args)]
    done = subprocess.run(argv, capture_output=True, text=True, env=dict(cluster.env, **(env or {})), cwd=cwd,
                          timeout=60)
    assert done.returncode == 0, f"sbatch failed: {' '.join(argv)}\n{done.stdout}{done.stderr}"
    return done.stdout.strip().split(";")[0]


def wait_for(cluster, job_id, folder, timeout, until=None, what="the job to end"):
    """Poll until ``until(records)`` (default: every record terminal); the records.

    On timeout, or when a job pends for a reason that never clears, cancel it and fail
    with its diagnostics.
    """
    until = until or (lambda recs: recs and all(r.state in TERMINAL for r in recs))
    deadline = time.monotonic() + timeout
    records = []
    while time.monotonic() < deadline:
        records = job_records(cluster, job_id)
        if until(records):
            return records
        hopeless = [r for r in records if r.state == "PENDING" and r.reason.startswith(HOPELESS)]
        if hopeless:
            info = diagnostics(cluster, job_id, folder)
            _run(["scancel", str(job_id)], cluster.env)
            pytest.fail(f"job {job_id} can never start ({hopeless[0].reason})\n{info}")
        time.sleep(0.5)
    info = diagnostics(cluster, job_id, folder)
    _run(["scancel", str(job_id)], cluster.env)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (job {job_id}; "
                f"states {[(r.job_id, r.state, r.reason) for r in records]})\n{info}")


def assert_state(cluster, records, folder, state="COMPLETED", status=0):
    bad = [r for r in records if r.state != state or r.status != status]
    if bad:
        info = diagnostics(cluster, records[0].job_id if records else "?", folder)
        pytest.fail(f"expected {state} with exit status {status}, got "
                    f"{[(r.job_id, r.state, r.exit_code) for r in bad]}\n{info}")
