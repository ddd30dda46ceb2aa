/**
 * Starts (or reuses) the single-node cluster of scripts/slurm/start-cluster.sh, for the cluster
 * tests and the benchmark. Not used by the executor, which talks to whatever cluster SLURM_CONF
 * (or /etc/slurm) names.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const START_SCRIPT = path.resolve(import.meta.dirname, '..', '..', 'scripts', 'slurm', 'start-cluster.sh');

const STOP_SCRIPT = path.resolve(import.meta.dirname, '..', '..', 'scripts', 'slurm', 'stop-cluster.sh');

export interface LocalCluster {
  conf: string;
  /** False when a cluster was already running and was reused: then it is not ours to stop. */
  startedHere: boolean;
}

/** SLURM_CONF of the running cluster, or why none can run here (the script's exit 3: not root, no apt). */
export function startLocalCluster(): LocalCluster | { skip: string } {
  if (process.platform !== 'linux') return { skip: 'a local Slurm cluster needs Linux' };
  const started = spawnSync('bash', [START_SCRIPT], { encoding: 'utf8', timeout: 300_000 });
  if (started.status === 3) return { skip: started.stderr.trim() };
  const conf = /export SLURM_CONF=(\S+)/.exec(started.stdout ?? '')?.[1];
  if (started.status !== 0 || !conf) {
    // The script stops what it started when it fails; a timeout kills it before it can.
    if (started.status === null) stopLocalCluster();
    throw new Error(`${START_SCRIPT} failed (exit ${started.status ?? started.signal}): ${started.stderr ?? started.error?.message}`);
  }
  return { conf, startedHere: !started.stderr.includes('reusing the cluster') };
}

/**
 * Stops slurmd, slurmctld and (if start-cluster.sh started it) munged, and waits until they are
 * gone. Whoever started the cluster calls it when done, also when its work failed (an afterAll).
 */
export function stopLocalCluster(): void {
  const stopped = spawnSync('bash', [STOP_SCRIPT], { encoding: 'utf8', timeout: 60_000 });
  if (stopped.status !== 0) throw new Error(`${STOP_SCRIPT} failed (exit ${stopped.status ?? stopped.signal}): ${stopped.stderr}`);
}
