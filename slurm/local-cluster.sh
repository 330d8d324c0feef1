#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, from Debian's packages, for
# trying the batch scripts in this folder and for the tests in tests/slurm/.
#
#   slurm/local-cluster.sh start     configure and start munged, slurmctld, slurmd; wait for the node
#   slurm/local-cluster.sh stop      cancel the jobs, stop the daemons (and munged if we started it)
#   slurm/local-cluster.sh status    sinfo and squeue (exit 0 when the cluster answers, 3 when not)
#   slurm/local-cluster.sh restart   stop, then start
#   slurm/local-cluster.sh env       print `export SLURM_CONF=...` (eval "$(slurm/local-cluster.sh env)")
#
# Needs root (slurmd runs jobs as their submitting user) and the packages:
#   apt-get install -y slurmctld slurmd slurm-client munge      (or .ci/slurm-setup.sh)
#
# Settings (environment variables):
#   HPCMICRO_SLURM_DIR      state, spool, logs and slurm.conf          (default /var/tmp/hpcmicro-slurm)
#   HPCMICRO_SLURM_CPUS     CPUs the node offers                       (default: nproc, at least 4)
#                           More than the cores is allowed: the config is authoritative
#                           (SlurmdParameters=config_overrides). The floor of 4 lets the example
#                           scripts (--ntasks-per-node=4: one master, three workers) run on a
#                           2-core machine; the ranks then share cores. Slurm will not start
#                           a job with more tasks on a node than the node has CPUs (and
#                           --overcommit does not combine with --ntasks-per-node).
#   HPCMICRO_SLURM_MEMORY   RealMemory in MiB                          (default: MemTotal - max(512, 10%))
#   HPCMICRO_SLURM_GPUS     GPUs the node offers as GRES gpu           (default: the /dev/nvidiaN devices)
#                           A number makes stand-ins instead: jobs asking for GPUs get scheduled
#                           (to try gpu.sbatch on a machine without one), but no device is bound
#                           (CUDA_VISIBLE_DEVICES stays unset; hpcmicro falls back to NumPy).
#   HPCMICRO_SLURM_PORT     slurmctld port; slurmd uses the next one   (default 6817)
#   HPCMICRO_SLURM_TIMEOUT  seconds `start` waits for the node          (default 60)
#
# The config is written to $HPCMICRO_SLURM_DIR/slurm.conf. If /etc/slurm/slurm.conf does not
# exist, it becomes a symlink to it, so plain `sbatch` finds the cluster (removed by `stop`);
# otherwise export SLURM_CONF (see `env`).

set -euo pipefail

DIR=${HPCMICRO_SLURM_DIR:-/var/tmp/hpcmicro-slurm}
CONF=$DIR/slurm.conf
ETC_CONF=/etc/slurm/slurm.conf
PORT=${HPCMICRO_SLURM_PORT:-6817}
TIMEOUT=${HPCMICRO_SLURM_TIMEOUT:-60}
PARTITION=debug
MARKER="# written by hpcmicro slurm/local-cluster.sh"

export SLURM_CONF=$CONF

say() { printf 'local-cluster: %s\n' "$*"; }
die() { printf 'local-cluster: error: %s\n' "$*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (slurmd starts jobs as their user; try: sudo $0 $*)"
}

need_packages() {
    local missing=()
    for cmd in munged slurmctld slurmd sbatch sinfo scontrol; do
        command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$cmd")
    done
    [ ${#missing[@]} -eq 0 ] || die "not installed: ${missing[*]}; install with:
    apt-get update && apt-get install -y slurmctld slurmd slurm-client munge"
}

sbin() { command -v "$1" 2>/dev/null || echo "/usr/sbin/$1"; }

pid_alive() {  # pid_alive FILE: the pid in FILE runs
    local pid
    [ -s "$1" ] && pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# -- munge ------------------------------------------------------------------------------

munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_works; then
        say "munge: already running"
        return
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge
    install -d -o munge -g munge -m 0711 /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        install -d -o munge -g munge -m 0700 /etc/munge
        runuser -u munge -- "$(sbin mungekey)" --create --keyfile=/etc/munge/munge.key \
            || die "cannot create /etc/munge/munge.key"
    fi
    runuser -u munge -- "$(sbin munged)" --pid-file=/run/munge/munged.pid 9>&- \
        || die "munged did not start; see /var/log/munge/munged.log"
    echo /run/munge/munged.pid >"$DIR/run/munged.ours"
    for _ in $(seq 50); do munge_works && { say "munge: started"; return; }; sleep 0.1; done
    die "munged started but munge -n | unmunge fails; see /var/log/munge/munged.log"
}

stop_munge() {
    [ -f "$DIR/run/munged.ours" ] || return 0  # not ours: leave it
    local pidfile
    pidfile=$(cat "$DIR/run/munged.ours")
    if pid_alive "$pidfile"; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        say "munge: stopped"
    fi
    rm -f "$DIR/run/munged.ours"
}

# -- configuration ----------------------------------------------------------------------

detect_gpus() {
    local n=0
    for dev in /dev/nvidia[0-9]*; do [ -e "$dev" ] && n=$((n + 1)); done
    echo "$n"
}

write_conf() {
    local host cpus mem_kib mem margin gpus
    host=$(hostname -s)
    cpus=$(nproc)
    cpus=${HPCMICRO_SLURM_CPUS:-$((cpus > 4 ? cpus : 4))}
    mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    mem=$((mem_kib / 1024))
    margin=$((mem / 10 > 512 ? mem / 10 : 512))
    mem=${HPCMICRO_SLURM_MEMORY:-$((mem - margin > 256 ? mem - margin : 256))}
    gpus=${HPCMICRO_SLURM_GPUS:-$(detect_gpus)}
    case "$cpus$mem$gpus$PORT" in *[!0-9]*) die "HPCMICRO_SLURM_CPUS/MEMORY/GPUS/PORT must be numbers";; esac
    [ "$cpus" -ge 1 ] || die "HPCMICRO_SLURM_CPUS must be >= 1"

    local gres_node="" gres_types=""
    if [ "$gpus" -gt 0 ]; then
        gres_types="GresTypes=gpu"
        gres_node="Gres=gpu:$gpus"
        if [ -z "${HPCMICRO_SLURM_GPUS:-}" ]; then   # real devices: Slurm binds them (CUDA_VISIBLE_DEVICES)
            echo "Name=gpu File=/dev/nvidia[0-$((gpus - 1))]" >"$DIR/gres.conf"
        else   # stand-ins: schedulable, nothing to bind (Slurm needs device files to count them)
            mkdir -p "$DIR/fakedev"
            for i in $(seq 0 $((gpus - 1))); do : >"$DIR/fakedev/nvidia$i"; done
            echo "Name=gpu File=$DIR/fakedev/nvidia[0-$((gpus - 1))]" >"$DIR/gres.conf"
        fi
    else
        rm -f "$DIR/gres.conf"
    fi

    cat >"$CONF" <<EOF
$MARKER
# Single node: $host, $cpus CPUs, $mem MiB, $gpus GPUs. Regenerated by every start.
ClusterName=hpcmicro
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: works in containers and VMs alike.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# The node's size comes from this file, not from probing (lets CPUs exceed the cores).
SlurmdParameters=config_overrides
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
# No accounting database; finished jobs stay visible to scontrol for 30 minutes, and
# every job end (also each requeue) is a line in jobcomp.log.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.log
MinJobAge=1800
# Quick turnarounds for tests: a requeued job may start again after 10 s (the step
# credential lifetime; default 120 s), the scheduler looks at pending jobs every 2 s
# (default 60 s), and a job past its time limit is killed 5 s after SIGTERM (default 30 s).
AuthInfo=cred_expire=10
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
KillWait=5
JobRequeue=1
$gres_types
# A job that does not say how much memory it needs gets its CPUs' share of the node's.
DefMemPerCPU=$((mem / cpus))
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem $gres_node State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    say "config: $CONF ($host: $cpus CPUs, $mem MiB, $gpus GPUs)"
}

link_etc_conf() {
    if [ -L "$ETC_CONF" ] && [ "$(readlink "$ETC_CONF")" = "$CONF" ]; then
        return
    fi
    if [ ! -e "$ETC_CONF" ] && [ ! -L "$ETC_CONF" ]; then
        mkdir -p "$(dirname "$ETC_CONF")"
        ln -s "$CONF" "$ETC_CONF"
        [ -f "$DIR/gres.conf" ] && [ ! -e /etc/slurm/gres.conf ] && ln -s "$DIR/gres.conf" /etc/slurm/gres.conf
        say "linked $ETC_CONF -> $CONF"
    else
        say "note: $ETC_CONF exists and is not ours; run: export SLURM_CONF=$CONF"
    fi
}

unlink_etc_conf() {
    if [ -L "$ETC_CONF" ] && [ "$(readlink "$ETC_CONF")" = "$CONF" ]; then
        rm -f "$ETC_CONF"
    fi
    if [ -L /etc/slurm/gres.conf ] && [ "$(readlink /etc/slurm/gres.conf)" = "$DIR/gres.conf" ]; then
        rm -f /etc/slurm/gres.conf
    fi
}

# -- daemons ----------------------------------------------------------------------------

answers() { timeout 10 sinfo -h >/dev/null 2>&1; }

node_state() { timeout 10 sinfo -h -N -o '%T' 2>/dev/null | head -n1; }

show_logs() {
    for f in "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log"; do
        [ -f "$f" ] && { echo "--- last lines of $f" >&2; tail -n 15 "$f" >&2; }
    done
}

start() {
    need_root start
    need_packages
    mkdir -p "$DIR"/{state,spool,run,log}
    chmod 0755 "$DIR"
    exec 9>"$DIR/run/lock"
    flock -w 120 9 || die "another local-cluster.sh holds $DIR/run/lock"

    if pid_alive "$DIR/run/slurmctld.pid" && pid_alive "$DIR/run/slurmd.pid" && answers; then
        say "already running ($(node_state))"
        wait_idle
        return
    fi
    stop_daemons quiet
    start_munge
    write_conf
    link_etc_conf
    # -c: a fresh controller state each start (no jobs recovered from a previous run)
    # (9>&-: the daemons must not inherit the lock)
    "$(sbin slurmctld)" -c -f "$CONF" 9>&- || { show_logs; die "slurmctld did not start"; }
    "$(sbin slurmd)" -f "$CONF" 9>&- || { show_logs; die "slurmd did not start"; }
    wait_idle
}

wait_idle() {
    local deadline=$((SECONDS + TIMEOUT)) state=""
    while [ $SECONDS -lt $deadline ]; do
        state=$(node_state || true)
        case "$state" in
            idle|mixed|allocated|completing) say "node $(hostname -s) is $state; partition $PARTITION; SLURM_CONF=$CONF"; return;;
            *drain*|*down*|*fail*)
                # e.g. left down by an earlier unclean stop: bring it back
                scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true;;
        esac
        sleep 0.5
    done
    show_logs
    timeout 10 sinfo -N -l >&2 2>&1 || true
    die "the node did not become idle within ${TIMEOUT}s (state: ${state:-no answer from slurmctld})"
}

stop_daemons() {
    local quiet=${1:-}
    if pid_alive "$DIR/run/slurmctld.pid" && answers; then   # end the jobs first: no slurmstepd outlives slurmd
        local jobs
        jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
        if [ -n "$jobs" ]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 50); do
                [ -z "$(timeout 10 squeue -h -o %i 2>/dev/null)" ] && break
                sleep 0.2
            done
        fi
    fi
    for d in slurmd slurmctld; do
        local pidfile=$DIR/run/$d.pid
        if pid_alive "$pidfile"; then
            local pid
            pid=$(cat "$pidfile")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            [ -n "$quiet" ] || say "$d: stopped"
        fi
        rm -f "$pidfile"
    done
}

stop() {
    need_root stop
    mkdir -p "$DIR/run"
    exec 9>"$DIR/run/lock"
    flock -w 120 9 || die "another local-cluster.sh holds $DIR/run/lock"
    stop_daemons
    stop_munge
    unlink_etc_conf
    say "stopped"
}

status() {
    if ! answers; then
        echo "local-cluster: not running (no answer from slurmctld; SLURM_CONF=$SLURM_CONF)"
        return 3
    fi
    sinfo -N -o '%N %P %T %c %m %G'
    echo
    squeue -o '%.8i %.9P %.20j %.8u %.10T %.10M %.6D %R'
}

case "${1:-}" in
    start) start;;
    stop) stop;;
    restart) stop; start;;
    status) status;;
    env) echo "export SLURM_CONF=$CONF";;
    *) echo "usage: $0 start|stop|status|restart|env" >&2; exit 2;;
esac
