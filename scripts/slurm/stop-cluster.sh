#!/usr/bin/env bash
# Stops the single-node cluster that start-cluster.sh started (slurmd and slurmctld from their pid
# files under the state folder). munged is left running: other Slurm users on the machine may need it.
#   bash scripts/slurm/stop-cluster.sh [--purge]   # --purge also deletes the state folder
set -euo pipefail
state="${LORE_SLURM_STATE:-/tmp/lore-slurm}"
for daemon in slurmd slurmctld; do
  pidfile="$state/$daemon.pid"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")"
    echo "stop-cluster: stopped $daemon"
  fi
done
if [[ "${1:-}" == "--purge" ]]; then rm -rf "$state"; echo "stop-cluster: removed $state"; fi
