/**
 * The Slurm executor's decisions (dependencies, retries, failures, cancellation) against a fake
 * Slurm that keeps a queue in memory and "runs" a job by building its stage in this process, as
 * `pipeline run-stage` would on a node. The real cluster is exercised in cluster.test.ts.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { builtinStages } from '../../stages/registry.ts';
import { loadConfig } from '../../pipeline/config/load.ts';
import { planPipeline, stagesToRun, type Plan } from '../../pipeline/plan.ts';
import { runStageInProcess } from '../../pipeline/executor/run-stage.ts';
import type { StageResult } from '../../pipeline/executor/types.ts';
import { ArtifactStore } from '../../pipeline/store/store.ts';
import { SlurmExecutor } from '../../pipeline/slurm/executor.ts';
import { readSlurmJobs } from '../../pipeline/slurm/job-record.ts';
import { SlurmClient, SlurmCommandError, type RunCommand } from '../../pipeline/slurm/slurm-client.ts';

/** What the fake job does when it runs: build the stage, fail, or end in a cluster state. */
type Outcome = 'build' | 'FAILED' | 'NODE_FAIL' | 'hang' | 'complete-without-publishing';

interface FakeJob {
  id: string;
  stage: string;
  afterOk: string[];
  stderrPath: string;
  state: string;
  outcome: Outcome;
}

/**
 * One `squeue` call is one tick: a PENDING job whose dependencies completed starts RUNNING, a
 * RUNNING one ends with its outcome; a job after a failed one is cancelled (kill_invalid_depend).
 */
class FakeSlurm {
  readonly jobs = new Map<string, FakeJob>();
  readonly scripts: string[] = [];
  readonly cancelled: string[] = [];
  private nextId = 100;
  private attempts = new Map<string, number>();

  constructor(
    private readonly plan: () => Plan,
    private readonly outcomes: (stage: string, attempt: number) => Outcome,
  ) {}

  readonly run: RunCommand = async (file, args, stdin) => {
    if (file === 'sbatch') return this.sbatch(stdin ?? '');
    if (file === 'squeue') return this.squeue(args[args.indexOf('-j') + 1]?.split(',') ?? []);
    if (file === 'sacct') {
      if (!args.includes('-c')) throw new SlurmCommandError('sacct failed', 'Slurm accounting storage is disabled');
      const ids = args[args.indexOf('-j') + 1]?.split(',') ?? [];
      return ids.flatMap((id) => {
        const job = this.jobs.get(id);
        return job && !['PENDING', 'RUNNING'].includes(job.state) ? [`${id}|${job.state}|${job.state === 'FAILED' ? '1:0' : '0:0'}`] : [];
      }).join('\n');
    }
    if (file === 'scancel') {
      for (const id of args) {
        this.cancelled.push(id);
        const job = this.jobs.get(id);
        if (job && ['PENDING', 'RUNNING'].includes(job.state)) job.state = 'CANCELLED';
      }
      return '';
    }
    throw new Error(`unexpected command ${file}`);
  };

  private sbatch(script: string): string {
    this.scripts.push(script);
    const stage = /--job-name=[^.]+\.(\S+)/.exec(script)?.[1] ?? '';
    const afterOk = /--dependency=afterok:(\S+)/.exec(script)?.[1]?.split(':') ?? [];
    const id = String(this.nextId++);
    const stderrPath = (/--error=(\S+)/.exec(script)?.[1] ?? '').replace('%j', id);
    const attempt = (this.attempts.get(stage) ?? 0) + 1;
    this.attempts.set(stage, attempt);
    this.jobs.set(id, { id, stage, afterOk, stderrPath, state: 'PENDING', outcome: this.outcomes(stage, attempt) });
    return `${id}\n`;
  }

  private async squeue(ids: string[]): Promise<string> {
    for (const job of this.jobs.values()) {
      if (job.state === 'RUNNING') await this.end(job);
      else if (job.state === 'PENDING') {
        const deps = job.afterOk.map((id) => this.jobs.get(id)?.state);
        if (deps.every((state) => state === 'COMPLETED')) job.state = 'RUNNING';
        else if (deps.some((state) => state !== undefined && !['PENDING', 'RUNNING', 'COMPLETED'].includes(state))) job.state = 'CANCELLED';
      }
    }
    return ids.flatMap((id) => (this.jobs.has(id) ? [`${id}|${this.jobs.get(id)?.state}|None`] : [])).join('\n');
  }

  private async end(job: FakeJob): Promise<void> {
    const plan = this.plan();
    const stage = plan.stages.find((s) => s.name === job.stage);
    if (!stage) throw new Error(`fake slurm: no stage ${job.stage}`);
    switch (job.outcome) {
      case 'build': {
        const result = await runStageInProcess(plan, stage, { signal: new AbortController().signal, emit: () => {} });
        job.state = result.state === 'succeeded' ? 'COMPLETED' : 'FAILED';
        return;
      }
      case 'FAILED':
        await fs.writeFile(job.stderrPath, 'loading inputs\nError: the stage broke on line 3\n');
        job.state = 'FAILED';
        return;
      case 'complete-without-publishing':
        job.state = 'COMPLETED';
        return;
      case 'hang':
        return;
      default:
        job.state = job.outcome;
    }
  }
}

let root: string;

beforeEach(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'slurm-executor-'));
});
afterEach(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

/** a -> b -> c, plus d needing a; every stage writes one file. */
async function planChain(localStages: string[] = []): Promise<Plan> {
  const stage = (name: string, needs: string[]) =>
    `  ${name}: { uses: exec, needs: [${needs.join(', ')}], ${localStages.includes(name) ? 'executor: local, ' : ''}with: { command: "echo ${name} > $PIPELINE_OUT/${name}.txt" } }`;
  const yaml = [
    'name: chain',
    'executor: slurm',
    'slurm: { poll_s: 0.01, retries: 1 }',
    'stages:',
    stage('a', []),
    stage('b', ['a']),
    stage('c', ['b']),
    stage('d', ['a']),
    '',
  ].join('\n');
  await fs.writeFile(path.join(root, 'chain.yaml'), yaml);
  const loaded = await loadConfig('chain.yaml', { registry: builtinStages, cwd: root });
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.diagnostics));
  const planned = await planPipeline(loaded.loaded, new ArtifactStore(path.join(root, 'store')));
  if (!planned.ok) throw new Error(JSON.stringify(planned.diagnostics));
  return planned.plan;
}

async function execute(plan: Plan, fake: FakeSlurm, options: { onError?: 'fail' | 'keep-going'; signal?: AbortSignal } = {}) {
  const events: string[] = [];
  const results = await new SlurmExecutor(new SlurmClient(fake.run)).execute({
    plan,
    stages: stagesToRun(plan),
    store: plan.store,
    lockToken: 'token-1',
    concurrency: 2,
    onError: options.onError ?? 'keep-going',
    signal: options.signal ?? new AbortController().signal,
    emit: (event) => events.push(event.type === 'end' ? `end ${event.result.stage} ${event.result.state}` : `${event.type} ${event.stage}`),
  });
  return { results, events, byStage: new Map(results.map((r) => [r.stage, r])) };
}

const states = (results: StageResult[]) => Object.fromEntries(results.map((r) => [r.stage, r.state]));

describe('SlurmExecutor', () => {
  it('submits the whole DAG at once with afterok dependencies and publishes every stage', async () => {
    const plan = await planChain();
    const fake = new FakeSlurm(() => plan, () => 'build');
    const { results } = await execute(plan, fake);
    expect(states(results)).toEqual({ a: 'succeeded', b: 'succeeded', c: 'succeeded', d: 'succeeded' });
    // Topological order a, b, c, d gets ids 100..103; each job waits on its needs' jobs.
    expect(fake.scripts.map((s) => /--dependency=(\S+)/.exec(s)?.[1] ?? 'none')).toEqual(['none', 'afterok:100', 'afterok:101', 'afterok:100']);
    // The job runs this project's CLI for its one stage, with the submitting run's lock token and fingerprint.
    const b = plan.stages.find((s) => s.name === 'b');
    expect(fake.scripts[1]).toContain(`run-stage ${path.join(root, 'chain.yaml')} b --store ${path.join(root, 'store')} --lock-token token-1 --expect-fingerprint ${b?.fingerprint}`);
    for (const stage of plan.stages) expect(await plan.store.hasObject(stage.fingerprint)).toBe(true);
    const record = await readSlurmJobs(plan.store, 'chain');
    expect(record?.jobs.c).toMatchObject({ jobId: '102', jobIds: ['102'], state: 'COMPLETED', result: 'succeeded', afterOk: ['101'] });
  });

  it('resubmits a job that ended in a retry_on state, and the jobs waiting on it with the new id', async () => {
    const plan = await planChain();
    const fake = new FakeSlurm(() => plan, (stage, attempt) => (stage === 'a' && attempt === 1 ? 'NODE_FAIL' : 'build'));
    const { results } = await execute(plan, fake);
    expect(states(results)).toEqual({ a: 'succeeded', b: 'succeeded', c: 'succeeded', d: 'succeeded' });
    // a=100 (NODE_FAIL), b=101, c=102, d=103 were queued; b and d wait on 100, c on 101 (all cancelled).
    expect(fake.cancelled.sort()).toEqual(['101', '102', '103']);
    const record = await readSlurmJobs(plan.store, 'chain');
    expect(record?.jobs.a?.jobIds).toEqual(['100', '104']);
    const resubmittedB = fake.scripts.slice(5).find((s) => s.includes('--job-name=chain.b'));
    expect(resubmittedB).toContain('--dependency=afterok:104');
  });

  it('fails a stage with the reason and its stderr tail, skips what needs it, and keeps going elsewhere', async () => {
    const plan = await planChain();
    const fake = new FakeSlurm(() => plan, (stage) => (stage === 'b' ? 'FAILED' : 'build'));
    const { byStage } = await execute(plan, fake);
    expect(byStage.get('b')?.state).toBe('failed');
    expect(byStage.get('b')?.message).toMatch(/^job 101 ended FAILED: the stage command failed \(exit code 1\)\n--- last lines of .*b\.101\.err ---\nloading inputs\nError: the stage broke on line 3$/);
    expect(byStage.get('c')).toMatchObject({ state: 'skipped', message: 'upstream b failed' });
    expect(fake.cancelled).toEqual(['102']);
    // d does not need b: --on-error keep-going builds it.
    expect(byStage.get('d')?.state).toBe('succeeded');
  });

  it('does not retry a stage that failed by itself even with retries left', async () => {
    const plan = await planChain();
    const fake = new FakeSlurm(() => plan, (stage) => (stage === 'a' ? 'FAILED' : 'build'));
    const { byStage } = await execute(plan, fake);
    expect(byStage.get('a')?.state).toBe('failed');
    expect(fake.scripts.filter((s) => s.includes('--job-name=chain.a'))).toHaveLength(1);
  });

  it('reports a job that completed without publishing (a store the node cannot see)', async () => {
    const plan = await planChain();
    const fake = new FakeSlurm(() => plan, (stage) => (stage === 'a' ? 'complete-without-publishing' : 'build'));
    const { byStage } = await execute(plan, fake, { onError: 'fail' });
    expect(byStage.get('a')?.message).toMatch(/^job 100 COMPLETED but published no artifact [0-9a-f]+; is the store on a file system the nodes share\?$/);
    expect(byStage.get('b')?.state).toBe('skipped');
  });

  it('cancels every submitted job on abort and publishes nothing unfinished', async () => {
    const plan = await planChain();
    const fake = new FakeSlurm(() => plan, (stage) => (stage === 'a' ? 'hang' : 'build'));
    const controller = new AbortController();
    const running = execute(plan, fake, { signal: controller.signal });
    // a is RUNNING forever; abort once all four jobs are queued.
    while (fake.jobs.size < 4) await new Promise((resolve) => setTimeout(resolve, 5));
    controller.abort();
    const { results } = await running;
    expect(states(results)).toEqual({ a: 'cancelled', b: 'cancelled', c: 'cancelled', d: 'cancelled' });
    expect(fake.cancelled.sort()).toEqual(['100', '101', '102', '103']);
    expect(await plan.store.hasObject(plan.stages[0]?.fingerprint ?? '')).toBe(false);
  });

  it('runs `executor: local` stages in this process and submits what needs them afterwards', async () => {
    const plan = await planChain(['b']);
    const fake = new FakeSlurm(() => plan, () => 'build');
    const { results } = await execute(plan, fake);
    expect(states(results)).toEqual({ a: 'succeeded', b: 'succeeded', c: 'succeeded', d: 'succeeded' });
    // Jobs: a, d (both submitted at once), then c once b was built locally: no afterok on a local stage.
    expect(fake.scripts.map((s) => /--job-name=chain\.(\S+)/.exec(s)?.[1])).toEqual(['a', 'd', 'c']);
    expect(fake.scripts[2]).not.toContain('--dependency');
  });
});
