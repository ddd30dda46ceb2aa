/**
 * Per-stage overhead of `executor: slurm` against the local executor, on a pipeline of short exec
 * stages (each writes one file), on the single-node cluster of scripts/slurm/start-cluster.sh.
 *
 *   npx tsx bench/slurm.ts [--stages 4] [--repeats 3]
 *
 * Prints one JSON object. For each executor (and for Slurm at two poll intervals) the median wall
 * time of `pipeline run` on a fresh store; `overhead_per_stage_s` = (slurm - local) / stages. The
 * stages form a chain, so every job waits for the one before it: the worst case for per-job
 * latency. `run_stage_cli_s` is what every job pays on the node before its stage starts: starting
 * `pipeline run-stage` (node + tsx + config load + plan), measured here on a cached stage.
 * The machine is shared: compare figures from one run of this script, not across runs.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { startLocalCluster, stopLocalCluster } from '../pipeline/slurm/local-cluster.ts';

const { values } = parseArgs({ options: { stages: { type: 'string', default: '4' }, repeats: { type: 'string', default: '3' } } });
const stageCount = Number(values.stages);
const repeats = Number(values.repeats);
const repo = path.resolve(import.meta.dirname, '..');
const bin = path.join(repo, 'bin', 'pipeline.js');

const cluster = startLocalCluster();
if ('skip' in cluster) {
  console.log(JSON.stringify({ skipped: cluster.skip }));
  process.exit(0);
}
const env = { ...process.env, SLURM_CONF: cluster.conf, CI: 'true' };
// A cluster this benchmark started is stopped when it exits, whatever happened (a failed run too).
if (cluster.startedHere) process.on('exit', stopLocalCluster);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-slurm-'));

function writeConfig(pollS: number): string {
  const lines = ['name: bench', `slurm: { poll_s: ${pollS}, mem: 256M }`, 'stages:'];
  for (let i = 0; i < stageCount; i++) {
    const needs = i === 0 ? '' : `needs: [s${i - 1}], `;
    lines.push(`  s${i}: { uses: exec, ${needs}with: { command: "echo ${i} > $PIPELINE_OUT/out.txt" } }`);
  }
  const file = path.join(dir, `bench-${pollS}.yaml`);
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

let storeSerial = 0;
/** Wall seconds of one `pipeline run` on a fresh store. */
function timeRun(config: string, executor: 'local' | 'slurm'): number {
  const store = path.join(dir, `store-${storeSerial++}`);
  const start = process.hrtime.bigint();
  const run = spawnSync(process.execPath, [bin, 'run', config, '--store', store, '--executor', executor], { env, encoding: 'utf8' });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (run.status !== 0) throw new Error(`${executor} run failed: ${run.stderr}`);
  if (fs.readdirSync(path.join(store, 'objects')).length !== stageCount) throw new Error(`${executor} run built the wrong number of stages`);
  return seconds;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const round = (x: number) => Math.round(x * 1000) / 1000;

const configs = { default: writeConfig(1), fast: writeConfig(0.2) };
const local: number[] = [];
const slurmDefault: number[] = [];
const slurmFast: number[] = [];
for (let r = 0; r < repeats; r++) {
  local.push(timeRun(configs.default, 'local'));
  slurmDefault.push(timeRun(configs.default, 'slurm'));
  slurmFast.push(timeRun(configs.fast, 'slurm'));
}

// Node-side start-up cost of one job: `run-stage` on a stage that is already built.
const builtStore = path.join(dir, 'store-0');
const cliTimes: number[] = [];
for (let r = 0; r < repeats; r++) {
  const start = process.hrtime.bigint();
  execFileSync(process.execPath, [bin, 'run-stage', configs.default, 's0', '--store', builtStore], { env, stdio: 'ignore' });
  cliTimes.push(Number(process.hrtime.bigint() - start) / 1e9);
}

const localS = median(local);
const result = {
  stages: stageCount,
  shape: 'chain',
  repeats,
  slurm: execFileSync('sinfo', ['--version'], { env, encoding: 'utf8' }).trim(),
  cpus: os.availableParallelism(),
  local_run_s: round(localS),
  slurm_run_s: { poll_1s: round(median(slurmDefault)), poll_0_2s: round(median(slurmFast)) },
  overhead_per_stage_s: {
    poll_1s: round((median(slurmDefault) - localS) / stageCount),
    poll_0_2s: round((median(slurmFast) - localS) / stageCount),
  },
  run_stage_cli_s: round(median(cliTimes)),
  samples: { local: local.map(round), slurm_poll_1s: slurmDefault.map(round), slurm_poll_0_2s: slurmFast.map(round) },
};
fs.rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify(result, null, 2));
