#!/usr/bin/env bash
# A one-node Slurm on this machine for the Slurm executor's tests (CI calls it; safe to run again).
#
# Installs munge and Slurm from the distribution's packages when missing, writes a slurm.conf for this host
# (one node at 127.0.0.1, no accounting database), starts munged, slurmctld and slurmd, and waits until
# `sinfo` shows the node idle. A Slurm that already answers is left untouched. Needs root (or sudo).
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
NODE=$(hostname -s)
CPUS=${SLURM_UP_CPUS:-$(nproc)}

node_idle() { timeout 10 sinfo -h -N -o "%T" 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; }

if command -v sinfo >/dev/null 2>&1 && node_idle; then
    echo "slurm-up: Slurm is already running"; sinfo; exit 0
fi

missing=()
for cmd in munged slurmctld slurmd sbatch; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "slurm-up: installing munge and Slurm (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

# munge: a key, then the daemon
if [ ! -s /etc/munge/munge.key ]; then
    $SUDO mkdir -p /etc/munge
    $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    $SUDO chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    $SUDO chmod 400 /etc/munge/munge.key
fi
$SUDO mkdir -p /run/munge /var/log/munge /var/lib/munge
$SUDO chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
if ! pgrep -x munged >/dev/null; then
    if id munge >/dev/null 2>&1; then
        $SUDO -u munge munged 2>/dev/null || $SUDO runuser -u munge -- munged
    else
        $SUDO munged --force
    fi
fi

# slurm.conf: one node, this host, reachable at 127.0.0.1
MEM_MB=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
$SUDO mkdir -p $CONF_DIR /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
NEW_CONF=$(cat <<CONF
# written by slothflow's scripts/slurm-up.sh: a one-node cluster for tests
ClusterName=slothflow
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
ReturnToService=2
MinJobAge=600
MaxArraySize=10001
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
)
# two GPUs that are only device names (nothing uses them): enough to accept and read back --gres=gpu:N
NEW_GRES=$(printf 'NodeName=%s Name=gpu File=/dev/null\nNodeName=%s Name=gpu File=/dev/zero\n' "$NODE" "$NODE")
if [ "$(cat $CONF 2>/dev/null)" != "$NEW_CONF" ] || [ "$(cat $CONF_DIR/gres.conf 2>/dev/null)" != "$NEW_GRES" ]; then
    if [ -f $CONF ] && ! grep -q "slurm-up.sh" $CONF; then
        echo "slurm-up: $CONF exists and was not written by this script; not replacing it" >&2; exit 1
    fi
    echo "$NEW_CONF" | $SUDO tee $CONF >/dev/null
    echo "$NEW_GRES" | $SUDO tee $CONF_DIR/gres.conf >/dev/null
    # our own daemons with an older configuration (the node is not healthy, or we would have left already)
    for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
        if [ -s $pidfile ]; then
            pid=$(cat $pidfile)
            $SUDO kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        fi
    done
fi

pgrep -x slurmctld >/dev/null || $SUDO slurmctld
pgrep -x slurmd >/dev/null || $SUDO slurmd -N "$NODE"

for _ in $(seq 1 60); do
    if node_idle; then
        echo "slurm-up: Slurm is running"; sinfo; exit 0
    fi
    # a node that came back from an unclean stop stays down until told otherwise
    timeout 10 scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
    sleep 1
done
echo "slurm-up: the node did not become idle; see /var/log/slurm/*.log" >&2
sinfo >&2 || true
exit 1
