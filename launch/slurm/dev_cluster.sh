#!/usr/bin/env bash
# A one-node Slurm cluster on this machine (localhost), to try launch/slurm/opd.sbatch and to test it.
#
#   sudo launch/slurm/dev_cluster.sh start    # install (Debian: slurm-wlm, munge) if missing, configure, start
#   export SLURM_CONF=/tmp/opd-slurm/slurm.conf
#   sbatch --wait launch/slurm/opd.sbatch --config configs/lab_cpu.yaml run.steps=5
#   sudo launch/slurm/dev_cluster.sh stop     # stops slurmctld and slurmd (munged stays: a system service)
#
# Idempotent: `start` on a running cluster only checks it. Runs as root (slurmd starts jobs as their user).
# Everything Slurm writes (state, spool, logs, pid files, slurm.conf) goes under $OPD_SLURM_DIR; the system's
# /etc/slurm is left alone. Ports: $OPD_SLURM_PORT and the next one (default 16817-16818, not Slurm's 6817).
# What a Debian 12 one-node set-up needs is in shared/DESIGN.md ("Slurm"): notably no cgroup.conf.
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin  # slurmctld, slurmd, munged, mungekey live there; a plain user PATH lacks it

DIR=${OPD_SLURM_DIR:-/tmp/opd-slurm}
CONF=$DIR/slurm.conf
PORT=${OPD_SLURM_PORT:-16817}
NODE=$(hostname -s)  # slurmd finds its node line by this name

die() { echo "dev_cluster.sh: $*" >&2; exit 1; }

install_packages() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return
    [ "$(id -u)" = 0 ] || die "slurm-wlm and munge are missing; run as root to install them"
    echo "dev_cluster.sh: installing slurm-wlm and munge" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    munge_ok && return
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    runuser -u munge -- munged --force
    for _ in $(seq 20); do munge_ok && return; sleep 0.5; done
    die "munged did not come up (see /var/log/munge/munged.log)"
}

write_conf() {
    local mem_mb cpus
    cpus=$(nproc)
    mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))  # must stay below the real memory
    mkdir -p "$DIR/state" "$DIR/spool"
    cat > "$CONF.new" <<EOF
ClusterName=opd-dev
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.new" "$CONF"
}

alive() { [ -s "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

node_ready() {  # registered and schedulable (a running job makes it mixed or allocated)
    case "$(SLURM_CONF=$CONF sinfo -h -n "$NODE" -o %T 2>/dev/null)" in
        idle | mixed | allocated) return 0 ;;
        *) return 1 ;;
    esac
}

start() {
    install_packages
    start_munge
    if alive slurmctld && alive slurmd && node_ready; then
        echo "$CONF"
        return
    fi
    stop_daemons
    write_conf
    slurmctld -f "$CONF"
    slurmd -f "$CONF" -N "$NODE"
    for _ in $(seq 60); do
        if node_ready; then echo "$CONF"; return; fi
        sleep 1
    done
    tail -n 20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
    die "the node did not become idle within 60 s (logs above)"
}

stop_daemons() {
    local name pid
    for name in slurmd slurmctld; do
        if alive "$name"; then
            pid=$(cat "$DIR/$name.pid")
            kill "$pid"
            for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        fi
        rm -f "$DIR/$name.pid"
    done
}

case "${1:-start}" in
    start) start ;;
    stop) stop_daemons ;;
    status) alive slurmctld && alive slurmd && node_ready && echo "running: SLURM_CONF=$CONF" ;;
    *) die "usage: $0 [start|stop|status]" ;;
esac
