/**
 * Starts (or reuses) the single-node cluster of scripts/slurm/start-cluster.sh, for the cluster
 * tests and the benchmark. Not used by the executor, which talks to whatever cluster SLURM_CONF
 * (or /etc/slurm) names.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const START_SCRIPT = path.resolve(import.meta.dirname, '..', '..', 'scripts', 'slurm', 'start-cluster.sh');

/** SLURM_CONF of the running cluster, or why none can run here (the script's exit 3: not root, no apt). */
export function startLocalCluster(): { conf: string } | { skip: string } {
  if (process.platform !== 'linux') return { skip: 'a local Slurm cluster needs Linux' };
  const started = spawnSync('bash', [START_SCRIPT], { encoding: 'utf8', timeout: 300_000 });
  if (started.status === 3) return { skip: started.stderr.trim() };
  const conf = /export SLURM_CONF=(\S+)/.exec(started.stdout ?? '')?.[1];
  if (started.status !== 0 || !conf) {
    throw new Error(`${START_SCRIPT} failed (exit ${started.status ?? started.signal}): ${started.stderr ?? started.error?.message}`);
  }
  return { conf };
}
