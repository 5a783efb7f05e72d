# Shared by dev_cluster.sh (one node on localhost) and two_node_cluster.sh (two nodes in network namespaces):
# package install, munge, the slurm.conf settings both use, and pid-file helpers. Source it; set PROG first.

die() { echo "$PROG: $*" >&2; exit 1; }

install_packages() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return
    [ "$(id -u)" = 0 ] || die "slurm-wlm and munge are missing; run as root to install them"
    echo "$PROG: installing slurm-wlm and munge" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {  # one munged for the machine: the namespaced nodes share its socket (same filesystem)
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

# slurm.conf lines both clusters share. $1: state dir, $2: controller "name(address)", $3: controller port,
# $4: what slurmd's spool/log/pid names end with ("" for one node; "-%n", the node name, for several).
conf_common() {
    cat <<EOC
ClusterName=opd-dev
SlurmctldHost=$2
SlurmctldPort=$3
SlurmdPort=$(($3 + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$1/state
SlurmdSpoolDir=$1/spool$4
SlurmctldPidFile=$1/slurmctld.pid
SlurmdPidFile=$1/slurmd$4.pid
SlurmctldLogFile=$1/slurmctld.log
SlurmdLogFile=$1/slurmd$4.log
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
EOC
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() {  # SIGTERM the daemon named by a pid file, wait up to 10 s, then remove the file
    local pid
    if pid_alive "$1"; then
        pid=$(cat "$1")
        kill "$pid"
        for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$1"
}

node_state() { SLURM_CONF=$1 sinfo -h -n "$2" -o %T 2>/dev/null; }

node_ready() {  # $1 conf, $2 node: registered and schedulable (a running job makes it mixed or allocated)
    case "$(node_state "$1" "$2")" in
        idle | mixed | allocated) return 0 ;;
        *) return 1 ;;
    esac
}
