#!/usr/bin/env bash
# CI: a single-node Slurm cluster for tests/slurm/. Installs Debian's slurmctld, slurmd,
# slurm-client and munge (only what is missing), then starts the cluster with
# slurm/local-cluster.sh. Idempotent: with everything installed and the cluster up it
# only checks, in about a second. Needs root (or sudo) and apt.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "slurm-setup: needs root or sudo" >&2; exit 1; }
    SUDO="sudo -n"
fi

missing=()
for pkg in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "slurm-setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Stand-in GPUs where there are none, so that the gpu.sbatch test is scheduled too.
gpus=${HPCMICRO_SLURM_GPUS:-}
if [ -z "$gpus" ] && ! ls /dev/nvidia[0-9]* >/dev/null 2>&1; then
    gpus=2
fi
$SUDO env ${gpus:+HPCMICRO_SLURM_GPUS=$gpus} \
    ${HPCMICRO_SLURM_DIR:+HPCMICRO_SLURM_DIR=$HPCMICRO_SLURM_DIR} \
    ${HPCMICRO_SLURM_CPUS:+HPCMICRO_SLURM_CPUS=$HPCMICRO_SLURM_CPUS} \
    bash slurm/local-cluster.sh start
