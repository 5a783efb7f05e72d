#!/usr/bin/env bash
# A two-node Slurm cluster on this machine: each node is a network namespace with its own address, hostname (a
# UTS namespace) and slurmd; slurmctld runs on the host side of the bridge that joins them. To try
# `sbatch --nodes=2 launch/slurm/opd.sbatch` and to test it across real network addresses.
#
#   sudo launch/slurm/two_node_cluster.sh start    # prints the slurm.conf to use
#   export SLURM_CONF=/tmp/opd-slurm2/slurm.conf
#   sbatch --nodes=2 --wait launch/slurm/opd.sbatch --config configs/lab_cpu.yaml run.steps=5
#   sudo launch/slurm/two_node_cluster.sh stop     # daemons, namespaces, bridge: everything `start` made
#   launch/slurm/two_node_cluster.sh exec opd-n2 CMD...   # a command on node 2 (its namespaces)
#
#   host:  opd-br0 10.77.0.1 (slurmctld)          node opd-n1: netns opd-n1, eth0 10.77.0.2, slurmd
#                                                 node opd-n2: netns opd-n2, eth0 10.77.0.3, slurmd
# What the namespaces separate: addresses, ports and hostnames. What the nodes still share: the filesystem (so
# the repository, the venv and /tmp), the process table and the cores. Root only. Idempotent: `start` on a running
# cluster only checks it. Names, addresses and ports are this script's own (OPD_SLURM2_* to change them), and
# `stop` removes only what carries them.
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin

DIR=${OPD_SLURM2_DIR:-/tmp/opd-slurm2}
CONF=$DIR/slurm.conf
PORT=${OPD_SLURM2_PORT:-16827}
NET=${OPD_SLURM2_NET:-10.77.0}  # a /24: .1 the host's bridge, .2 and .3 the nodes
BRIDGE=opd-br0
NODES=(opd-n1 opd-n2)  # node name = netns name = hostname inside it
CTL=$(hostname -s)     # slurmctld accepts to run only where the hostname is SlurmctldHost's name

PROG=two_node_cluster.sh
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"

node_ip() { echo "$NET.$(( $1 + 2 ))"; }  # node index 0, 1 -> .2, .3

make_network() {
    ip link show "$BRIDGE" >/dev/null 2>&1 || {
        ip link add "$BRIDGE" type bridge
        ip addr add "$NET.1/24" dev "$BRIDGE"
    }
    ip link set "$BRIDGE" up
    local i node
    for i in "${!NODES[@]}"; do
        node=${NODES[$i]}
        ip netns list | grep -qx "$node\( .*\)\?" || ip netns add "$node"
        if ! ip link show "$node-h" >/dev/null 2>&1; then
            ip link add "$node-h" type veth peer name eth0 netns "$node"
            ip -n "$node" addr add "$(node_ip "$i")/24" dev eth0
        fi
        ip link set "$node-h" master "$BRIDGE" up
        ip -n "$node" link set eth0 up
        ip -n "$node" link set lo up  # Ray and the job's own services use loopback inside the node
    done
}

remove_network() {
    local node
    for node in "${NODES[@]}"; do
        ip link del "$node-h" 2>/dev/null || true  # removes its peer in the namespace too
        ip netns del "$node" 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true
}

# `node_exec NODE CMD...`: CMD in the node's network namespace and a UTS namespace whose hostname is NODE.
# nsenter, not `ip netns exec`: that one also remounts /sys, hiding /sys/fs/cgroup, and slurmd will not start
# without it.
node_exec() {
    local node=$1
    shift
    nsenter --net="/run/netns/$node" unshare --uts -- sh -c 'hostname "$0" && exec "$@"' "$node" "$@"
}

write_conf() {
    local mem_mb cpus i
    cpus=$(nproc)
    # Each node claims the machine's cores (they share them) and 40% of its memory (slurmd checks it has that much).
    mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 4 / 10 ))
    mkdir -p "$DIR/state"
    for i in "${!NODES[@]}"; do mkdir -p "$DIR/spool-${NODES[$i]}"; done
    {
        conf_common "$DIR" "$CTL($NET.1)" "$PORT" "-%n"
        for i in "${!NODES[@]}"; do
            echo "NodeName=${NODES[$i]} NodeAddr=$(node_ip "$i") CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN"
        done
        echo "PartitionName=debug Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP"
    } > "$CONF.new"
    mv "$CONF.new" "$CONF"
}

all_alive() {
    pid_alive "$DIR/slurmctld.pid" || return 1
    local node
    for node in "${NODES[@]}"; do
        pid_alive "$DIR/slurmd-$node.pid" && node_ready "$CONF" "$node" || return 1
    done
}

start() {
    [ "$(id -u)" = 0 ] || die "network namespaces need root"
    install_packages
    start_munge
    if all_alive; then echo "$CONF"; return; fi
    stop_daemons
    make_network
    write_conf
    slurmctld -f "$CONF"
    local node
    for node in "${NODES[@]}"; do node_exec "$node" slurmd -f "$CONF" -N "$node"; done
    for _ in $(seq 60); do
        if all_alive; then echo "$CONF"; return; fi
        sleep 1
    done
    tail -n 20 "$DIR"/slurmctld.log "$DIR"/slurmd-*.log >&2 || true
    die "the nodes did not become idle within 60 s (logs above)"
}

stop_daemons() {
    local node
    for node in "${NODES[@]}"; do stop_pidfile "$DIR/slurmd-$node.pid"; done
    stop_pidfile "$DIR/slurmctld.pid"
}

# Whatever a job left in a node (a Ray raylet of a killed job, say) runs in its namespace: end it by pid before
# the namespace goes, so that nothing outlives `stop`.
kill_node_processes() {
    local node pids
    for node in "${NODES[@]}"; do
        pids=$(ip netns pids "$node" 2>/dev/null || true)
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    done
}

case "${1:-start}" in
    start) start ;;
    stop) stop_daemons; kill_node_processes; remove_network ;;
    status) all_alive && echo "running: SLURM_CONF=$CONF" ;;
    exec) shift; node_exec "$@" ;;
    *) die "usage: $0 [start|stop|status|exec NODE CMD...]" ;;
esac
