#!/usr/bin/env bash
# Starts a one-node Slurm cluster on this machine, for the tests of the Slurm
# sweep backend (tests/runs/test_slurm_backend.py, marker `slurm`).
#
#   sudo tools/slurm_one_node.sh          # install if needed, configure, start
#   sudo tools/slurm_one_node.sh --stop   # stop the daemons it started
#
# Idempotent: a cluster that already answers with an idle node is left as it
# is. Needs root and, the first time, apt (Debian/Ubuntu: slurm-wlm, munge).
# No systemd is needed: munged, slurmctld and slurmd are started directly.
# The configuration is the smallest that runs real jobs without cgroups:
# proctrack/linuxproc, task/none, select/cons_tres (cores and memory as
# consumable resources), no accounting database (jobs are followed with
# scontrol/squeue). It is a test cluster, not a production set-up.
#
# Environment: SLURM_ONE_NODE_TIMEOUT (seconds to wait for the idle node,
# default 60).
set -euo pipefail

CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
TIMEOUT="${SLURM_ONE_NODE_TIMEOUT:-60}"

log() { echo "slurm_one_node: $*" >&2; }

if [[ "$(id -u)" != 0 ]]; then
  log "needs root (it installs packages and starts daemons); run it with sudo."
  exit 1
fi

pid_alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_daemons() {
  for pidfile in "$RUN_DIR/slurmd.pid" "$RUN_DIR/slurmctld.pid" /run/munge/munged.pid; do
    if pid_alive "$pidfile"; then
      kill "$(cat "$pidfile")" && log "stopped $(basename "$pidfile" .pid)"
    fi
  done
}

if [[ "${1:-}" == "--stop" ]]; then
  stop_daemons
  exit 0
fi

node_idle() {
  timeout 10 sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'
}

if node_idle; then
  log "a cluster is up already:"
  sinfo >&2
  exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurm-wlm and munge with apt-get ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  # The packages' postinst tries to start services; without systemd that
  # fails harmlessly (policy-rc.d 101 would stop it, but is not needed).
  apt-get install -y -q slurm-wlm munge >/dev/null
fi

HOST="$(hostname -s)"
# `slurmd -C` prints this node's line (CPUs, sockets, cores, memory in MB).
NODE_LINE="$(slurmd -C | head -n 1)"
# Leave 1 GB of the node's memory to the system.
REAL_MEMORY="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$NODE_LINE")"
NODE_LINE="$(sed "s/RealMemory=[0-9]*/RealMemory=$((REAL_MEMORY > 2048 ? REAL_MEMORY - 1024 : REAL_MEMORY))/" <<<"$NODE_LINE")"

mkdir -p "$CONF_DIR" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR" "$RUN_DIR"
cat >"$CONF.new" <<EOF
# Written by tools/slurm_one_node.sh: a one-node test cluster.
ClusterName=tfsm
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits this long before it starts again (default 120 s).
AuthInfo=cred_expire=10
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
JobRequeue=1
# Finished jobs stay visible to scontrol/squeue for 10 minutes.
MinJobAge=600
# Seconds between SIGTERM and SIGKILL: time for a run to write its checkpoint.
KillWait=60
SchedulerParameters=sched_interval=2
$NODE_LINE State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
if ! cmp -s "$CONF.new" "$CONF" 2>/dev/null; then
  mv "$CONF.new" "$CONF"
  log "wrote $CONF for node $HOST"
  RESTART=1
else
  rm -f "$CONF.new"
  RESTART=0
fi

# munge: a key readable by the munge user only, and its run directory.
if [[ ! -s /etc/munge/munge.key ]]; then
  mungekey --create >/dev/null 2>&1 || \
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! pid_alive /run/munge/munged.pid; then
  runuser -u munge -- munged
  log "started munged"
fi

if (( RESTART )); then
  for pidfile in "$RUN_DIR/slurmd.pid" "$RUN_DIR/slurmctld.pid"; do
    if pid_alive "$pidfile"; then
      kill "$(cat "$pidfile")"
      for _ in $(seq 50); do pid_alive "$pidfile" || break; sleep 0.2; done
    fi
  done
fi
if ! pid_alive "$RUN_DIR/slurmctld.pid"; then
  slurmctld
  log "started slurmctld"
fi
if ! pid_alive "$RUN_DIR/slurmd.pid"; then
  slurmd
  log "started slurmd"
fi

for _ in $(seq "$TIMEOUT"); do
  if node_idle; then
    sinfo >&2
    exit 0
  fi
  # A node left down or drained by an earlier start comes back.
  scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
  sleep 1
done
log "the node did not become idle in ${TIMEOUT}s; see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log:"
sinfo >&2 || true
tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
exit 1
