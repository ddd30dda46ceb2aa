#!/usr/bin/env bash
# Stops the single-node cluster that start-cluster.sh started: slurmd and slurmctld from their pid
# files under the state folder, and munged when start-cluster.sh started it (it left
# $state/munged.pid); a munged that was already running is left alone. Waits until they are gone.
#   bash scripts/slurm/stop-cluster.sh [--purge]   # --purge also deletes the state folder
set -euo pipefail
state="${LORE_SLURM_STATE:-/tmp/lore-slurm}"
for daemon in slurmd slurmctld munged; do
  pidfile="$state/$daemon.pid"
  [[ -f "$pidfile" ]] || continue
  pid="$(cat "$pidfile")"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    echo "stop-cluster: stopped $daemon (pid $pid)"
  fi
  # munged's pid file is ours; slurm's own are rewritten by the daemons at their next start.
  [[ "$daemon" == munged ]] && rm -f "$pidfile"
done
if [[ "${1:-}" == "--purge" ]]; then rm -rf "$state"; echo "stop-cluster: removed $state"; fi
