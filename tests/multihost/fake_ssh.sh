#!/bin/sh
# A stand-in for ssh, for MPICH hydra's ssh launcher (`mpiexec -launcher ssh
# -launcher-exec fake_ssh.sh`): it "logs in" to an emulated host on this machine.
#
# hydra runs it as   fake_ssh.sh -x HOST "/path/hydra_pmi_proxy" --control-port IP:PORT ...
# like ssh: options, the host, then the remote command line (joined by a
# shell, as sshd would). HOST is looked up in HPCMICRO_MH_HOSTS, a
# space-separated list of IP=NETNS=HOSTNAME entries, and the command runs in
# that host's network namespace, in fresh UTS (the hostname), IPC (System V
# shared memory) and mount namespaces, the last with its own empty /dev/shm.
# One call = one hydra proxy = every rank hydra places on that host, so the
# ranks of one host share their /dev/shm and ranks of two hosts never do.
while [ $# -gt 0 ]; do
    case $1 in
        -*) shift ;;
        *) break ;;
    esac
done
host=$1
shift
for entry in $HPCMICRO_MH_HOSTS; do
    ip=${entry%%=*}
    rest=${entry#*=}
    ns=${rest%%=*}
    name=${rest#*=}
    if [ "$ip" = "$host" ] || [ "$name" = "$host" ]; then
        exec ip netns exec "$ns" unshare --uts --ipc --mount --propagation private \
            sh -c 'hostname "$1" && mount -t tmpfs -o mode=1777 tmpfs /dev/shm && exec sh -c "$2"' \
            fake_ssh "$name" "$*"
    fi
done
echo "fake_ssh: no emulated host '$host' in HPCMICRO_MH_HOSTS='$HPCMICRO_MH_HOSTS'" >&2
exit 255
