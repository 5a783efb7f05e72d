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
# What a Debian 12 one-node set-up needs is in docs/design.md ("Real components", Slurm): notably no cgroup.conf.
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin  # slurmctld, slurmd, munged, mungekey live there; a plain user PATH lacks it

DIR=${OPD_SLURM_DIR:-/tmp/opd-slurm}
CONF=$DIR/slurm.conf
PORT=${OPD_SLURM_PORT:-16817}
NODE=$(hostname -s)  # slurmd finds its node line by this name

PROG=dev_cluster.sh
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"

write_conf() {
    local mem_mb cpus
    cpus=$(nproc)
    mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))  # must stay below the real memory
    mkdir -p "$DIR/state" "$DIR/spool"
    {
        conf_common "$DIR" "$NODE(127.0.0.1)" "$PORT" ""
        cat <<EOF
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    } > "$CONF.new"
    mv "$CONF.new" "$CONF"
}

alive() { pid_alive "$DIR/$1.pid"; }

start() {
    install_packages
    start_munge
    if alive slurmctld && alive slurmd && node_ready "$CONF" "$NODE"; then
        echo "$CONF"
        return
    fi
    stop_daemons
    write_conf
    slurmctld -f "$CONF"
    slurmd -f "$CONF" -N "$NODE"
    for _ in $(seq 60); do
        if node_ready "$CONF" "$NODE"; then echo "$CONF"; return; fi
        sleep 1
    done
    tail -n 20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
    die "the node did not become idle within 60 s (logs above)"
}

stop_daemons() {
    stop_pidfile "$DIR/slurmd.pid"
    stop_pidfile "$DIR/slurmctld.pid"
}

case "${1:-start}" in
    start) start ;;
    stop) stop_daemons ;;
    status) alive slurmctld && alive slurmd && node_ready "$CONF" "$NODE" && echo "running: SLURM_CONF=$CONF" ;;
    *) die "usage: $0 [start|stop|status]" ;;
esac
