"""Emulated hosts on one machine: a network namespace, hostname and /dev/shm each.

``EmulatedCluster`` builds, in the root namespace, a bridge with an address
(``BRIDGE_IP``) and, per host, a network namespace whose ``eth0`` is one end of
a veth pair enslaved to the bridge. ``mpiexec`` runs in the root namespace and
starts one hydra proxy per host through ``fake_ssh.sh`` (hydra's ssh launcher),
which enters the host's network namespace plus fresh UTS, IPC and mount
namespaces (hostname, System V IPC, an empty /dev/shm). Ranks of two hosts can
then reach each other only over TCP through the bridge. docs/multihost.md has
the details.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.mpirun import MPIRun, mpiexec, run_command

HERE = Path(__file__).resolve().parent
FAKE_SSH = HERE / "fake_ssh.sh"

PREFIX = "hmmh"  # every namespace and link this module creates starts with it
BRIDGE = f"{PREFIX}br0"
SUBNET = "10.213.77"  # a /24 unlikely to be in use; checked before use
BRIDGE_IP = f"{SUBNET}.1"
LOCK = Path("/run/hpcmicro-multihost.lock")

# What every multi-host mpiexec gets: UCX (MPICH's default netmod in the wheel)
# would otherwise see one machine (same boot id) and move inter-host messages
# through System V shared memory and CMA (process_vm_readv); TCP on eth0 only.
NET_ENV = {
    "ucx": {"MPIR_CVAR_CH4_NETMOD": "ucx", "UCX_TLS": "self,tcp", "UCX_NET_DEVICES": "eth0"},
    "ofi": {"MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp", "FI_TCP_IFACE": "eth0"},
}


class Unavailable(Exception):
    """The emulated hosts cannot be built here (not root, no ip netns, ...): skip."""


@dataclass(frozen=True)
class Host:
    key: str  # "a", "b", ...
    ip: str
    netns: str
    hostname: str
    veth: str  # the root-namespace end

    def tx_bytes(self) -> int:
        """Bytes the host sent out of its eth0 (= received on the bridge side)."""
        return int(Path(f"/sys/class/net/{self.veth}/statistics/rx_bytes").read_text())


def _ip(*args, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


class EmulatedCluster:
    def __init__(self, keys=("a", "b", "c"), workdir: Path | None = None):
        self.hosts = {k: Host(k, f"{SUBNET}.{11 + i}", f"{PREFIX}-{k}", f"mh-{k}", f"{PREFIX}-{k}")
                      for i, k in enumerate(keys)}
        self._own_workdir = workdir is None  # then a temporary folder, removed at tear-down
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))
        self.launcher = self.workdir / "fake_ssh.sh"
        self._lock_fh = None  # held from set-up to tear-down: one session at a time builds the hosts

    # -- set-up and tear-down ---------------------------------------------------------

    def __enter__(self) -> EmulatedCluster:
        try:
            self.setup()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.teardown()

    def setup(self) -> None:
        if os.geteuid() != 0:
            raise Unavailable("needs root (network, UTS and mount namespaces)")
        for tool in ("ip", "unshare"):
            if shutil.which(tool) is None:
                raise Unavailable(f"{tool} not found")
        try:
            _ip("netns", "list")
        except (OSError, subprocess.SubprocessError) as exc:
            raise Unavailable(f"`ip netns list` fails: {exc}") from None
        self._lock_fh = open(LOCK, "w")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.close()
            self._lock_fh = None
            raise Unavailable(f"another test session holds {LOCK} (its emulated hosts are in use)") from None
        self._remove_leftovers()  # from a session that was killed before its tear-down
        in_use = _ip("-o", "addr").stdout
        if f" {SUBNET}." in in_use:
            raise Unavailable(f"{SUBNET}.0/24 is already in use on this machine")
        shutil.copy(FAKE_SSH, self.launcher)  # a copy: the executable bit does not depend on the checkout
        self.launcher.chmod(0o755)
        try:
            _ip("link", "add", BRIDGE, "type", "bridge")
        except subprocess.CalledProcessError as exc:
            raise Unavailable(f"cannot create a bridge: {exc.stderr.strip()}") from None
        _ip("addr", "add", f"{BRIDGE_IP}/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        for h in self.hosts.values():
            try:
                _ip("netns", "add", h.netns)
            except subprocess.CalledProcessError as exc:
                raise Unavailable(f"`ip netns add` fails: {exc.stderr.strip()}") from None
            _ip("link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.netns)
            _ip("link", "set", h.veth, "master", BRIDGE, "up")
            _ip("-n", h.netns, "addr", "add", f"{h.ip}/24", "dev", "eth0")
            _ip("-n", h.netns, "link", "set", "eth0", "up")
            _ip("-n", h.netns, "link", "set", "lo", "up")

    def _remove_leftovers(self) -> None:
        names = [line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip()]
        for ns in names:
            if ns.startswith(PREFIX + "-"):
                self._kill_netns_processes(ns)
                _ip("netns", "del", ns, check=False)
        _ip("link", "del", BRIDGE, check=False)
        self._wait_links_gone()

    @staticmethod
    def _kill_netns_processes(ns: str) -> None:
        """SIGKILL what still runs in a namespace of ours (ranks of a killed job)."""
        for _ in range(50):
            pids = [int(p) for p in _ip("netns", "pids", ns, check=False).stdout.split()]
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    @staticmethod
    def _wait_links_gone(timeout=10.0) -> None:
        """Namespaces and their veths go away asynchronously; wait for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            links = _ip("-o", "link").stdout
            if f"{PREFIX}-" not in links and BRIDGE not in links:
                return
            time.sleep(0.1)

    def teardown(self) -> None:
        """Kill what runs on the hosts, remove them and the bridge (only if set-up took the lock)."""
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self._lock_fh is None:
            return  # never built anything (or another session's hosts: not ours to remove)
        try:
            for h in self.hosts.values():
                self._kill_netns_processes(h.netns)
                _ip("netns", "del", h.netns, check=False)
            _ip("link", "del", BRIDGE, check=False)
            self._wait_links_gone()
        finally:
            self._lock_fh.close()
            self._lock_fh = None

    def leftovers(self) -> list:
        """Namespaces and links of ours still present (empty after a clean tear-down)."""
        ns = [line.split()[0] for line in _ip("netns", "list").stdout.splitlines()
              if line.startswith(PREFIX)]
        links = [line.split(":")[1].strip() for line in _ip("-o", "link").stdout.splitlines()
                 if PREFIX in line]
        return ns + links

    # -- running jobs ---------------------------------------------------------------------

    def argv(self, layout, program) -> list:
        """``mpiexec`` across hosts: layout is [(host key, ranks), ...], ranks in that order."""
        hosts = ",".join(f"{self.hosts[k].ip}:{n}" for k, n in layout)
        ranks = sum(n for _, n in layout)
        return [mpiexec(), "-launcher", "ssh", "-launcher-exec", str(self.launcher), "-iface", BRIDGE,
                "-hosts", hosts, "-n", str(ranks), *map(str, program)]

    def env(self, netmod="ucx") -> dict:
        table = " ".join(f"{h.ip}={h.netns}={h.hostname}" for h in self.hosts.values())
        return {"HPCMICRO_MH_HOSTS": table, **NET_ENV[netmod]}

    def run(self, layout, program, timeout=60, netmod="ucx") -> MPIRun:
        return run_command(self.argv(layout, program), timeout=timeout, env=self.env(netmod))

    def start(self, layout, program, netmod="ucx") -> subprocess.Popen:
        """Start a job in the background (its own session, so that kill_job stops it whole)."""
        from tests.mpirun import MPI_ENV, ROOT

        env = dict(os.environ, **MPI_ENV, **self.env(netmod))
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        return subprocess.Popen(self.argv(layout, program), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, start_new_session=True)


