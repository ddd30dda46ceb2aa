#!/usr/bin/env bash
# Starts (or reuses) a real single-node Slurm cluster on this machine, for the slurm executor's tests
# and for trying `executor: slurm` without a cluster. Needs root; installs Debian's slurm packages
# when they are missing. Idempotent: a cluster already answering from the same state folder is reused.
#
#   bash scripts/slurm/start-cluster.sh          # prints `export SLURM_CONF=...` as its last line
#   eval "$(bash scripts/slurm/start-cluster.sh | tail -n 1)"
#
# Exit codes: 0 ready; 3 cannot start here (not root, no apt, install failed): callers skip;
# 1 started but did not become idle (a real failure: see the logs it names).
#
# The recipe (settings and why) is in pipeline/slurm/README.md, "The one-machine recipe". Config and
# state live under $LORE_SLURM_STATE (default /tmp/lore-slurm); /etc/slurm is never touched, so
# every Slurm command needs SLURM_CONF exported.
set -euo pipefail

state="${LORE_SLURM_STATE:-/tmp/lore-slurm}"
conf="$state/slurm.conf"
cannot() { echo "start-cluster: cannot start a Slurm cluster here: $*" >&2; exit 3; }
say() { echo "start-cluster: $*" >&2; }

[[ "$(id -u)" == 0 ]] || cannot "needs root (to run munged, slurmctld and slurmd), running as $(id -un)"

if [[ -f "$conf" ]] && command -v sinfo >/dev/null \
  && SLURM_CONF="$conf" timeout 5 sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated|completing)'; then
  say "reusing the cluster configured in $conf"
  echo "export SLURM_CONF=$conf"
  exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
  || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || cannot "slurm is not installed and there is no apt-get"
  say "installing slurmctld slurmd slurm-client munge"
  export DEBIAN_FRONTEND=noninteractive
  # Try without `apt-get update` first: it is the slow part and often already done. The lock
  # timeout waits for another apt on the machine instead of failing at once.
  if ! apt-get install -y -q -o DPkg::Lock::Timeout=300 slurmctld slurmd slurm-client munge >"/tmp/lore-slurm-apt.log" 2>&1; then
    { apt-get update -q -o DPkg::Lock::Timeout=300 && apt-get install -y -q -o DPkg::Lock::Timeout=300 slurmctld slurmd slurm-client munge; } \
      >>"/tmp/lore-slurm-apt.log" 2>&1 || cannot "apt-get install failed (see /tmp/lore-slurm-apt.log)"
  fi
fi

mkdir -p "$state"/{ctld,spool,log}
# Whatever fails from here on stops what this script started (stop-cluster.sh reads the pid files).
trap 'status=$?; if [[ $status != 0 && $status != 3 ]]; then bash "$(dirname "$0")/stop-cluster.sh" >&2 || true; fi' EXIT

# munge: the daemon that authenticates every Slurm RPC. No systemd here, so start it by hand.
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  [[ -f /etc/munge/munge.key ]] || { mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
    || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null || { echo "start-cluster: munged did not start" >&2; exit 1; }
  # This script started munged, so stop-cluster.sh stops it too (one that was running is left alone).
  cp /run/munge/munged.pid "$state/munged.pid" 2>/dev/null || pgrep -o -x munged >"$state/munged.pid" || true
fi

host="$(hostname -s)"
# The node line (CPUs, sockets, memory) as slurmd itself sees this machine.
node_line="$(slurmd -C | head -n 1)"

cat >"$conf" <<EOF
# Written by scripts/slurm/start-cluster.sh; pipeline/slurm/README.md says why each setting is here.
ClusterName=lore
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without it one job takes all of the node's memory and jobs run one at a time.
DefMemPerCPU=1024
# Without it a submitted job waits ~3 s for the batch scheduler.
SchedulerParameters=batch_sched_delay=0
# Without it a job after a failed one pends forever instead of being cancelled.
DependencyParameters=kill_invalid_depend
# No slurmdbd here: final states come from the job completion file via `sacct -c`.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$state/jobcomp.txt
JobAcctGatherType=jobacct_gather/none
MinJobAge=300
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
$node_line
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
say "wrote $conf"

export SLURM_CONF="$conf"
# Stale daemons from an earlier configuration (or a crashed run) would hold the ports.
for pidfile in "$state/slurmctld.pid" "$state/slurmd.pid"; do
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then kill "$(cat "$pidfile")"; sleep 0.5; fi
done
slurmctld -f "$conf"
slurmd -f "$conf"

for _ in $(seq 300); do
  node_state="$(sinfo -h -o %T 2>/dev/null | head -n 1 || true)"
  if [[ "$node_state" == idle* ]]; then
    say "cluster ready (node $host idle)"
    echo "export SLURM_CONF=$conf"
    exit 0
  fi
  # A node that came back DOWN from an earlier run is returned to service once.
  if [[ "$node_state" == down* || "$node_state" == drain* ]]; then
    scontrol update nodename="$host" state=resume 2>/dev/null || true
  fi
  sleep 0.2
done
echo "start-cluster: node did not become idle in 60 s (state: ${node_state:-none}); see $state/log/" >&2
exit 1
