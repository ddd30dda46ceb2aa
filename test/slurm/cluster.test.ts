/**
 * The Slurm executor on a real single-node cluster, started by scripts/slurm/start-cluster.sh
 * (which installs Debian's slurm packages when missing). Skipped, with the reason printed, where
 * the cluster cannot start: not root, no apt, not Linux.
 *
 * Each test runs the real CLI (`node bin/pipeline.js`) in a temp folder on configs of tiny exec
 * stages, so jobs run `pipeline run-stage` on the node exactly as on a real cluster.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startLocalCluster, stopLocalCluster } from '../../pipeline/slurm/local-cluster.ts';

const repo = path.resolve(import.meta.dirname, '..', '..');
const bin = path.join(repo, 'bin', 'pipeline.js');

const cluster = startLocalCluster();
if ('skip' in cluster) console.warn(`skipping the Slurm cluster tests: ${cluster.skip}`);

/** The pids of the daemons the start script recorded (munged's only when it started munged). */
function daemonPids(): number[] {
  const state = process.env.LORE_SLURM_STATE ?? '/tmp/lore-slurm';
  return ['slurmd', 'slurmctld', 'munged'].flatMap((daemon) => {
    try {
      return [Number(readFileSync(path.join(state, `${daemon}.pid`), 'utf8').trim())];
    } catch {
      return [];
    }
  });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

// A cluster this file started is stopped when it is done, also when a test failed (issue 34 #16:
// munged, slurmctld and slurmd outlived the suite); one that was running before is left running.
afterAll(() => {
  if (!('conf' in cluster) || !cluster.startedHere) return;
  const pids = daemonPids();
  stopLocalCluster();
  expect(pids.filter(alive)).toEqual([]);
});
const env = { ...process.env, SLURM_CONF: 'conf' in cluster ? cluster.conf : '', CI: 'true' };

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slurm-cluster-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to the end. */
function pipeline(args: string[]): Promise<CliRun> {
  return settle(spawn(process.execPath, [bin, ...args], { cwd: dir, env }));
}

function settle(child: ReturnType<typeof spawn>): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk) => (stdout += chunk));
  child.stderr?.on('data', (chunk) => (stderr += chunk));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

async function writeConfig(name: string, stages: Record<string, { needs?: string[]; command: string }>): Promise<string> {
  const lines = [`name: ${name}`, 'slurm: { poll_s: 0.2, time: "00:05:00", mem: 256M }', 'stages:'];
  for (const [stage, { needs = [], command }] of Object.entries(stages)) {
    lines.push(`  ${stage}: { uses: exec, needs: [${needs.join(', ')}], with: { command: ${JSON.stringify(command)} } }`);
  }
  const file = path.join(dir, `${name}.yaml`);
  await fs.writeFile(file, `${lines.join('\n')}\n`);
  return file;
}

async function jobRecord(store: string, pipelineName: string): Promise<Record<string, { jobId: string; state: string }>> {
  try {
    return JSON.parse(await fs.readFile(path.join(store, 'runs', pipelineName, 'slurm-jobs.json'), 'utf8')).jobs;
  } catch {
    return {};
  }
}

/** Polls `probe` until it gives a value; gives up when `run` (the CLI being watched) has ended. */
async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, run?: Promise<CliRun>, timeoutMs = 60_000): Promise<T> {
  let ended: CliRun | undefined;
  void run?.then((result) => (ended = result));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    if (ended) throw new Error(`waiting for ${what}, the run ended (exit ${ended.code}):\n${ended.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const chain = {
  words: { command: 'printf "judge\\nquery\\n" > "$PIPELINE_OUT/words.txt"' },
  upper: { needs: ['words'], command: 'tr a-z A-Z < "$PIPELINE_INPUT_WORDS/words.txt" > "$PIPELINE_OUT/upper.txt"' },
  count: { needs: ['words'], command: 'wc -l < "$PIPELINE_INPUT_WORDS/words.txt" > "$PIPELINE_OUT/count.txt"' },
};

describe.skipIf('skip' in cluster)('Slurm executor on a real cluster', () => {
  it('runs every stage as a job and publishes the same fingerprints as a local run', async () => {
    const config = await writeConfig('chain', chain);
    const viaSlurm = await pipeline(['run', config, '--store', 'slurm-store', '--executor', 'slurm']);
    expect(viaSlurm.stderr).not.toContain('error');
    expect(viaSlurm.code).toBe(0);
    const local = await pipeline(['run', config, '--store', 'local-store']);
    expect(local.code).toBe(0);
    const objects = async (store: string) => (await fs.readdir(path.join(dir, store, 'objects'))).sort();
    expect(await objects('slurm-store')).toEqual(await objects('local-store'));
    expect(await objects('slurm-store')).toHaveLength(3);

    const jobs = await jobRecord(path.join(dir, 'slurm-store'), 'chain');
    expect(Object.keys(jobs).sort()).toEqual(['count', 'upper', 'words']);
    // The final states come from sacct (here `sacct -c`: the cluster has no accounting database).
    const ids = Object.values(jobs).map((job) => job.jobId);
    const sacct = execFileSync('sacct', ['-c', '-n', '-P', '-j', ids.join(','), '-o', 'JobID,State'], { env, encoding: 'utf8' });
    expect(sacct.trim().split('\n').sort()).toEqual(ids.map((id) => `${id}|COMPLETED`).sort());

    const status = await pipeline(['status', config, '--store', 'slurm-store']);
    expect(status.stdout).toContain(`slurm jobs:\n  words: job ${jobs.words?.jobId} COMPLETED (attempt 1)`);

    // Everything is cached now: a second Slurm run submits nothing.
    const again = await pipeline(['run', config, '--store', 'slurm-store', '--executor', 'slurm']);
    expect(again.stdout).toContain('0 built, 3 cached');
    expect((await jobRecord(path.join(dir, 'slurm-store'), 'chain')).words?.jobId).toBe(jobs.words?.jobId);
  });

  it('reports a job killed with scancel, and the rerun resumes from what was published', async () => {
    // `slow` waits for a file the test creates after killing the first attempt; the file is not
    // part of the fingerprint, so the rerun is the same stage.
    const release = path.join(dir, 'release');
    const config = await writeConfig('killed', {
      first: { command: 'echo one > "$PIPELINE_OUT/one.txt"' },
      slow: { needs: ['first'], command: `while [ ! -f ${release} ]; do sleep 0.2; done; echo two > "$PIPELINE_OUT/two.txt"` },
      last: { needs: ['slow'], command: 'cat "$PIPELINE_INPUT_SLOW/two.txt" > "$PIPELINE_OUT/three.txt"' },
    });
    const store = path.join(dir, 'store');
    const run = settle(spawn(process.execPath, [bin, 'run', config, '--store', store, '--executor', 'slurm'], { cwd: dir, env }));
    const slowJob = await waitFor('slow to run', async () => {
      const job = (await jobRecord(store, 'killed')).slow;
      return job?.state === 'RUNNING' ? job.jobId : undefined;
    }, run);
    await promisify(execFile)('scancel', [slowJob], { env });
    const killed = await run;
    expect(killed.code).toBe(1);
    expect(killed.stderr).toContain(`error: stage slow failed: job ${slowJob} ended CANCELLED`);
    expect(killed.stderr).toContain('not run: last (upstream slow failed)');

    await fs.writeFile(release, '');
    const rerun = await pipeline(['run', config, '--store', store, '--executor', 'slurm']);
    expect(rerun.code).toBe(0);
    expect(rerun.stdout).toMatch(/^first: cached/m);
    expect(rerun.stdout).toContain('2 built, 1 cached');
  });

  it('shows the tail of a failed stage and skips what needs it', async () => {
    const config = await writeConfig('broken', {
      ok: { command: 'echo fine > "$PIPELINE_OUT/x"' },
      broken: { needs: ['ok'], command: "echo 'Traceback: boom on row 7' >&2; exit 3" },
      after: { needs: ['broken'], command: 'true' },
    });
    const result = await pipeline(['run', config, '--store', 'store', '--executor', 'slurm']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/error: stage broken failed: job \d+ ended FAILED: the stage command failed \(exit code 1\)\n--- last lines of .*broken\.log ---\n/);
    expect(result.stderr).toContain('Traceback: boom on row 7');
    expect(result.stderr).toContain('not run: after (upstream broken failed)');
  });

  it('cancels the submitted jobs on Ctrl-C', async () => {
    const config = await writeConfig('interrupted', {
      hang: { command: 'sleep 60' },
      next: { needs: ['hang'], command: 'true' },
    });
    const store = path.join(dir, 'store');
    const child = spawn(process.execPath, [bin, 'run', config, '--store', store, '--executor', 'slurm'], { cwd: dir, env });
    const done = settle(child);
    const jobs = await waitFor('hang to run', async () => {
      const record = await jobRecord(store, 'interrupted');
      return record.hang?.state === 'RUNNING' && record.next ? record : undefined;
    }, done);
    child.kill('SIGINT');
    const result = await done;
    expect(result.code).toBe(130); // cancelled, not failed
    const ids = [jobs.hang?.jobId, jobs.next?.jobId].join(',');
    // Right after scancel a job is COMPLETING; wait for both to reach their final state.
    const states = await waitFor('the jobs to end', async () => {
      const out = execFileSync('squeue', ['-h', '-t', 'all', '-j', ids, '-o', '%i|%T'], { env, encoding: 'utf8' });
      return /PENDING|RUNNING|COMPLETING/.test(out) ? undefined : out.trim().split('\n').sort();
    });
    expect(states).toEqual([`${jobs.hang?.jobId}|CANCELLED`, `${jobs.next?.jobId}|CANCELLED`].sort());
    expect(await fs.readdir(path.join(store, 'objects')).catch(() => [])).toEqual([]);
  });
});
