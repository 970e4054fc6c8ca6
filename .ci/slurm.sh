#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for CI and tests/test_slurm.py.
#
#   bash .ci/slurm.sh install   apt-get install slurm-wlm + munge (idempotent; needs root)
#   bash .ci/slurm.sh start     write slurm.conf, start munged, slurmctld, slurmd; wait for idle
#   bash .ci/slurm.sh stop      scontrol shutdown + stop munged; fail if a daemon survives
#   bash .ci/slurm.sh status    daemons, sinfo, squeue
#
# The cluster: one node (this host, `hostname -s`, reached on 127.0.0.1) with all its CPUs and
# 95% of its memory, one default partition `debug`, no accounting database (sacct has nothing to
# say; Snakemake's SLURM executor must query job status with squeue, which MinJobAge=600 keeps
# answering for ten minutes after a job ends), no cgroups (proctrack/linuxproc, task/none).
# Everything runs as root (SlurmUser=root) because CI runs as root.
#
# Paths (override with the environment variables):
#   SLURM_CONF               /etc/slurm/slurm.conf (the default every SLURM client reads)
#   LEUKBENCH_SLURM_LOGDIR   /var/log/slurm  -> slurmctld.log, slurmd.log
#   LEUKBENCH_MUNGE_LOG      /var/log/munge/munged.log
#   LEUKBENCH_SLURM_SPOOL    /var/spool/slurm -> ctld/ (state), d/ (slurmd spool)
#   LEUKBENCH_SLURM_TIMEOUT  60 (seconds to wait for the node to become idle / daemons to stop)
set -Eeuo pipefail

SLURM_CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
LOGDIR=${LEUKBENCH_SLURM_LOGDIR:-/var/log/slurm}
SPOOL=${LEUKBENCH_SLURM_SPOOL:-/var/spool/slurm}
TIMEOUT=${LEUKBENCH_SLURM_TIMEOUT:-60}
RUNDIR=/run/slurm
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUNDIR=/run/munge
MUNGE_LOG=${LEUKBENCH_MUNGE_LOG:-/var/log/munge/munged.log}
MARKER="# Written by leukbench .ci/slurm.sh"
PARTITION=debug
export SLURM_CONF

log() { echo "slurm.sh: $*" >&2; }

# Set while 'start' runs: a failed start stops what it started instead of leaving it half up.
STARTING=0

die() {
    trap - ERR
    log "ERROR: $*"
    show_logs
    if ((STARTING)); then
        STARTING=0
        log "stopping the daemons of the failed start"
        teardown_quietly
    fi
    exit 1
}

# Any command failing outside a condition ends up here, with the daemon logs.
trap 'die "command failed (line $LINENO): $BASH_COMMAND"' ERR

show_logs() {
    local f
    for f in "$MUNGE_LOG" "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log"; do
        if [[ -f $f ]]; then
            echo "----- last 30 lines of $f -----" >&2
            tail -n 30 "$f" >&2 || true
        fi
    done
}

need_root() {
    [[ $(id -u) -eq 0 ]] || { log "ERROR: '$1' needs root (daemons run as SlurmUser=root)"; exit 1; }
}

need_binaries() {
    local b missing=()
    for b in munged slurmctld slurmd scontrol sinfo srun sbatch squeue; do
        command -v "$b" >/dev/null 2>&1 || missing+=("$b")
    done
    if ((${#missing[@]})); then
        log "ERROR: missing SLURM/munge binaries: ${missing[*]} (run: bash .ci/slurm.sh install)"
        exit 1
    fi
}

running() { pgrep -x "$1" >/dev/null 2>&1; }

cmd_install() {
    need_root install
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v munged >/dev/null && command -v srun >/dev/null; then
        log "slurm-wlm and munge already installed: $(slurmctld -V)"
        return 0
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
    log "installed $(slurmctld -V)"
}

node_name() { hostname -s 2>/dev/null || echo localhost; }

write_conf() {
    local node=$1 cpus mem_kb mem_mb
    cpus=$(nproc)
    mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    mem_mb=$((mem_kb / 1024 * 95 / 100))
    if [[ -f $SLURM_CONF ]] && ! grep -qF "$MARKER" "$SLURM_CONF"; then
        local backup="$SLURM_CONF.bak.$(date +%Y%m%d%H%M%S)"
        log "keeping the existing $SLURM_CONF as $backup"
        cp -p "$SLURM_CONF" "$backup"
    fi
    mkdir -p "$(dirname "$SLURM_CONF")"
    cat >"$SLURM_CONF" <<EOF
$MARKER; rewritten on every 'start'.
ClusterName=leukbench
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=$RUNDIR/slurmctld.pid
SlurmdPidFile=$RUNDIR/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in containers: track processes through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# No accounting database: sacct knows nothing, job status comes from squeue.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished jobs stay visible to squeue for 10 minutes (Snakemake polls every 10-180 s).
MinJobAge=600
# Generous timeouts: a loaded CI machine must not mark its only node DOWN.
SlurmctldTimeout=300
SlurmdTimeout=300
MessageTimeout=60
InactiveLimit=0
KillWait=30
Waittime=0
BatchStartTimeout=120
# A node that was DOWN comes back as soon as it registers with a valid configuration.
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# Use the CPUs/RealMemory below even where slurmd detects a different topology.
SlurmdParameters=config_overrides
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$node CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if running munged && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        log "munged already running"
        return 0
    fi
    if [[ ! -s $MUNGE_KEY ]]; then
        log "creating $MUNGE_KEY"
        mkdir -p "$(dirname "$MUNGE_KEY")"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$MUNGE_KEY" --force
        else
            dd if=/dev/urandom bs=1 count=1024 of="$MUNGE_KEY" status=none
        fi
    fi
    mkdir -p "$MUNGE_RUNDIR" /var/lib/munge "$(dirname "$MUNGE_LOG")"
    # munged runs as the key's owner; the package's 'munge' user when it exists.
    local user=root
    if id munge >/dev/null 2>&1; then
        user=munge
    fi
    chown "$user": "$MUNGE_KEY" "$MUNGE_RUNDIR" /var/lib/munge "$(dirname "$MUNGE_KEY")"
    chmod 0400 "$MUNGE_KEY"
    chmod 0700 "$(dirname "$MUNGE_KEY")"
    chmod 0755 "$MUNGE_RUNDIR"
    touch "$MUNGE_LOG"
    chown "$user": "$MUNGE_LOG" "$(dirname "$MUNGE_LOG")"
    if [[ $user == root ]]; then
        munged --force --log-file="$MUNGE_LOG" || die "munged failed to start"
    else
        runuser -u munge -- munged --force --log-file="$MUNGE_LOG" \
            || die "munged failed to start"
    fi
    local i
    for ((i = 0; i < TIMEOUT * 2; i++)); do
        if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
            log "munged is running (log: $MUNGE_LOG)"
            return 0
        fi
        sleep 0.5
    done
    die "munged does not answer (munge -n | unmunge fails)"
}

node_state() { sinfo -h -N -n "$1" -o '%T' 2>/dev/null | head -n 1; }

cmd_start() {
    need_root start
    need_binaries
    if running slurmctld || running slurmd; then
        log "SLURM daemons already running; restarting them with a fresh configuration"
        cmd_stop
    fi
    STARTING=1
    local node
    node=$(node_name)
    mkdir -p "$LOGDIR" "$SPOOL/ctld" "$SPOOL/d" "$RUNDIR"
    # One log per cluster session: the previous session's logs move to *.1.
    local f
    for f in slurmctld.log slurmd.log; do
        if [[ -f $LOGDIR/$f ]]; then
            mv -f "$LOGDIR/$f" "$LOGDIR/$f.1"
        fi
    done
    write_conf "$node"
    log "wrote $SLURM_CONF (node $node, $(nproc) CPUs, partition $PARTITION)"
    start_munge
    # -c: a fresh cluster, no jobs or node states restored from an earlier session.
    slurmctld -c || die "slurmctld failed to start"
    slurmd || die "slurmd failed to start"
    log "slurmctld log: $LOGDIR/slurmctld.log"
    log "slurmd log:    $LOGDIR/slurmd.log"
    local i state=""
    for ((i = 0; i < TIMEOUT; i++)); do
        running slurmctld || die "slurmctld exited"
        running slurmd || die "slurmd exited"
        state=$(node_state "$node" || true)
        case $state in
            idle*)
                log "node $node is $state; cluster ready (partition $PARTITION)"
                STARTING=0
                return 0
                ;;
            down* | drain* | fail*)
                # ReturnToService=2 should make this unnecessary; a stale saved state can need it.
                scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true
                ;;
        esac
        sleep 1
    done
    sinfo -N -l >&2 || true
    die "node $node not idle after ${TIMEOUT}s (state: '${state:-unknown}')"
}

teardown_quietly() {
    local i pidfile
    scontrol shutdown >/dev/null 2>&1 || true
    for ((i = 0; i < 20; i++)); do
        running slurmctld || running slurmd || break
        sleep 0.5
    done
    for pidfile in "$RUNDIR/slurmctld.pid" "$RUNDIR/slurmd.pid" "$MUNGE_RUNDIR/munged.pid"; do
        if [[ -s $pidfile ]]; then
            kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
        fi
    done
}

munged_pid() {
    local pidfile=$MUNGE_RUNDIR/munged.pid
    if [[ -s $pidfile ]]; then
        cat "$pidfile"
    else
        pgrep -x munged | head -n 1
    fi
}

cmd_stop() {
    need_root stop
    if running slurmctld || running slurmd; then
        # Shuts down slurmctld and every slurmd it knows.
        scontrol shutdown >/dev/null 2>&1 || log "scontrol shutdown failed; signalling the daemons"
    fi
    local i
    for ((i = 0; i < TIMEOUT * 2; i++)); do
        if ! running slurmctld && ! running slurmd; then
            break
        fi
        # slurmd outlives a slurmctld that died before it could tell it to stop.
        if ((i == 20)); then
            local pidfile
            for pidfile in "$RUNDIR/slurmctld.pid" "$RUNDIR/slurmd.pid"; do
                if [[ -s $pidfile ]]; then
                    kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
                fi
            done
        fi
        sleep 0.5
    done
    if running slurmctld || running slurmd; then
        pgrep -a -x slurmctld >&2 || true
        pgrep -a -x slurmd >&2 || true
        die "SLURM daemons still running after ${TIMEOUT}s"
    fi
    local pid
    pid=$(munged_pid || true)
    if [[ -n $pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < TIMEOUT * 2; i++)); do
            running munged || break
            sleep 0.5
        done
    fi
    if running munged; then
        die "munged still running after ${TIMEOUT}s"
    fi
    log "stopped slurmctld, slurmd and munged"
}

cmd_status() {
    local d rc=0
    for d in munged slurmctld slurmd; do
        if running "$d"; then
            echo "$d: running (pid $(pgrep -x "$d" | tr '\n' ' '))"
        else
            echo "$d: stopped"
            rc=1
        fi
    done
    echo "config: $SLURM_CONF; logs: $LOGDIR/slurmctld.log, $LOGDIR/slurmd.log, $MUNGE_LOG"
    if running slurmctld; then
        sinfo -N -l || rc=1
        squeue --states=all || rc=1
    fi
    return "$rc"
}

case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status || exit 1 ;;
    *)
        echo "usage: $0 install|start|stop|status" >&2
        exit 2
        ;;
esac
