/**
 * The Slurm executor: each stage to build becomes one batch job running this project's own CLI
 * (`pipeline run-stage`) on a node, which reads inputs from and publishes into the shared store
 * exactly as a local run does. Stages the config keeps `executor: local` run here, in-process.
 *
 * A job is submitted as soon as each stage it needs is either built or itself a submitted job
 * (then as `--dependency=afterok:<id>`), so the whole DAG sits in the Slurm queue at once and the
 * scheduler, not this process, decides when each runs. This process polls the jobs' states
 * (squeue, then sacct for final ones), retries the states the policy names, and on abort cancels
 * every job it submitted. Job ids go to `runs/<pipeline>/slurm-jobs.json` for `pipeline status`.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import PQueue from 'p-queue';
import type { Plan, PlannedStage } from '../plan.ts';
import { runStageCommand, runStageInProcess } from '../executor/run-stage.ts';
import type { ExecutionRequest, Executor, StageResult } from '../executor/types.ts';
import { classifyState, shouldRetry, type JobVerdict } from './job-state.ts';
import { JobRecorder } from './job-record.ts';
import { renderSbatchScript } from './sbatch-script.ts';
import { SlurmClient, type JobStateRow } from './slurm-client.ts';
import { tailLines } from './tail.ts';

/** How many lines of a failed job's stderr go into the failure message. */
const STDERR_TAIL_LINES = 20;

interface Job {
  id: string;
  attempt: number;
  /** Where `%j` in the log paths has been filled in. */
  stdoutPath: string;
  stderrPath: string;
  /** Last state seen, e.g. PENDING; undefined until the first poll. */
  state?: string;
}

type Tracked =
  | { status: 'waiting'; stage: PlannedStage; attempts: number }
  | { status: 'submitted'; stage: PlannedStage; job: Job; submittedAt: number; startedAt?: number }
  | { status: 'local'; stage: PlannedStage }
  | { status: 'done'; stage: PlannedStage; result: StageResult };

export class SlurmExecutor implements Executor {
  readonly name = 'slurm';

  constructor(private readonly client: SlurmClient = new SlurmClient()) {}

  async execute(request: ExecutionRequest): Promise<StageResult[]> {
    return new SlurmRun(request, this.client).run();
  }
}

export const slurmExecutor: Executor = new SlurmExecutor();

/** One `execute` call: the state of every stage it was given. */
class SlurmRun {
  private readonly tracked = new Map<string, Tracked>();
  private readonly pipeline: string;
  private readonly recorder: JobRecorder;
  private readonly general: PQueue;
  private readonly train: PQueue;
  /** --on-error fail: set by the first failure; nothing new is submitted or started after it. */
  private stoppedBy: string | undefined;

  constructor(
    private readonly request: ExecutionRequest,
    private readonly client: SlurmClient,
  ) {
    const plan: Plan = request.plan;
    this.pipeline = plan.loaded.config.name;
    this.recorder = new JobRecorder(plan.store, this.pipeline);
    this.general = new PQueue({ concurrency: request.concurrency });
    this.train = new PQueue({ concurrency: plan.loaded.config.resources.train });
    for (const stage of request.stages) this.tracked.set(stage.name, { status: 'waiting', stage, attempts: 0 });
  }

  async run(): Promise<StageResult[]> {
    const { signal } = this.request;
    try {
      while (!signal.aborted && [...this.tracked.values()].some((t) => t.status !== 'done')) {
        await this.startReady();
        const submitted = this.submitted();
        if (submitted.length > 0) await this.poll(submitted);
        if (this.stoppedBy !== undefined) await this.cancelPending();
        if ([...this.tracked.values()].every((t) => t.status === 'done')) break;
        await sleep(this.pollSeconds() * 1000, undefined, { signal }).catch(() => undefined);
      }
    } finally {
      if (signal.aborted) await this.cancelAll();
      await this.general.onIdle();
      await this.recorder.flush();
    }
    return this.request.stages.map((stage) => {
      const t = this.tracked.get(stage.name);
      if (t?.status !== 'done') throw new Error(`Internal error: slurm executor ended with ${stage.name} ${t?.status}`);
      return t.result;
    });
  }

  /** Submits (or, for local stages, starts) every waiting stage whose needs allow it. */
  private async startReady(): Promise<void> {
    for (const stage of this.request.stages) {
      const t = this.tracked.get(stage.name);
      if (t?.status !== 'waiting') continue;
      const needs = stage.needs.map((need) => this.tracked.get(need)).filter((need): need is Tracked => need !== undefined);
      const broken = needs.find((need) => need.status === 'done' && need.result.state !== 'succeeded');
      if (broken?.status === 'done') {
        this.finish(stage, this.skipped(stage, `upstream ${broken.stage.name} ${broken.result.state === 'skipped' ? 'was skipped' : broken.result.state}`));
        continue;
      }
      if (this.stoppedBy !== undefined) {
        this.finish(stage, this.skipped(stage, `the run stopped after ${this.stoppedBy} failed (--on-error fail)`));
        continue;
      }
      const built = (need: Tracked) => need.status === 'done';
      if (stage.executor === 'slurm') {
        if (needs.every((need) => built(need) || need.status === 'submitted')) await this.submit(t);
      } else if (needs.every(built)) {
        this.startLocal(stage);
      }
    }
  }

  private async submit(waiting: Extract<Tracked, { status: 'waiting' }>): Promise<void> {
    const { stage } = waiting;
    const { plan, store } = this.request;
    const afterOk = stage.needs.flatMap((need) => {
      const t = this.tracked.get(need);
      return t?.status === 'submitted' ? [t.job.id] : [];
    });
    const logDir = path.join(path.dirname(store.logPath(this.pipeline, stage.name)), 'slurm');
    await fs.mkdir(logDir, { recursive: true });
    const script = renderSbatchScript({
      name: `${this.pipeline}.${stage.name}`,
      slurm: stage.slurm,
      command: runStageCommand(plan, stage, this.request.lockToken),
      workDir: plan.loaded.dir,
      stdoutPath: path.join(logDir, `${stage.name}.%j.out`),
      stderrPath: path.join(logDir, `${stage.name}.%j.err`),
      afterOk,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    });
    await fs.writeFile(path.join(logDir, `${stage.name}.sbatch`), script);
    let id: string;
    try {
      id = await this.client.submit(script);
    } catch (error) {
      this.finish(stage, this.failed(stage, `could not submit the job: ${(error as Error).message}`, 0));
      return;
    }
    const attempt = waiting.attempts + 1;
    const job: Job = {
      id,
      attempt,
      stdoutPath: path.join(logDir, `${stage.name}.${id}.out`),
      stderrPath: path.join(logDir, `${stage.name}.${id}.err`),
    };
    this.tracked.set(stage.name, { status: 'submitted', stage, job, submittedAt: Date.now() });
    this.request.emit({ type: 'start', stage: stage.name, time: Date.now() });
    this.recorder.record(stage, { jobId: id, attempt, state: 'SUBMITTED', afterOk, stdout: job.stdoutPath, stderr: job.stderrPath });
  }

  private startLocal(stage: PlannedStage): void {
    this.tracked.set(stage.name, { status: 'local', stage });
    const build = async () => {
      if (this.request.signal.aborted) return this.finish(stage, this.skipped(stage, 'cancelled before it started'));
      const result = await runStageInProcess(this.request.plan, stage, { signal: this.request.signal, emit: this.request.emit });
      this.finish(stage, result);
    };
    const enqueue = () => this.general.add(build);
    void (stage.resources === 'train' ? this.train.add(enqueue) : enqueue());
  }

  private async poll(submitted: Extract<Tracked, { status: 'submitted' }>[]): Promise<void> {
    let rows: Map<string, JobStateRow>;
    try {
      rows = await this.client.states(submitted.map((t) => t.job.id));
    } catch (error) {
      // A slurmctld restart or a busy controller: keep the jobs and ask again at the next poll.
      this.warn(`could not read job states (${(error as Error).message}); retrying`);
      return;
    }
    for (const t of submitted) {
      const row = rows.get(t.job.id);
      // Settling an earlier job may have ended or requeued this one (it waited on that job).
      if (!row || this.tracked.get(t.stage.name) !== t) continue;
      const verdict = classifyState(row.state, { exitCode: row.exitCode, time: t.stage.slurm.time, mem: t.stage.slurm.mem });
      if (verdict.state !== t.job.state) {
        t.job.state = verdict.state;
        if (verdict.state === 'RUNNING' && t.startedAt === undefined) t.startedAt = Date.now();
        this.recorder.update(t.stage.name, verdict.state);
      }
      if (verdict.final) await this.settle(t, verdict);
    }
  }

  private async settle(t: Extract<Tracked, { status: 'submitted' }>, verdict: Extract<JobVerdict, { final: true }>): Promise<void> {
    const { stage, job } = t;
    // From the first poll that saw it RUNNING; a job that ran between two polls counts from submission.
    const durationS = (Date.now() - (t.startedAt ?? t.submittedAt)) / 1000;
    if (verdict.ok) {
      if (await this.request.store.hasObject(stage.fingerprint)) {
        this.finish(stage, { ...this.base(stage), state: 'succeeded', durationS });
      } else {
        await this.fail(stage, `job ${job.id} COMPLETED but published no artifact ${stage.fingerprint}; is the store on a file system the nodes share?`, durationS);
      }
      return;
    }
    if (shouldRetry(verdict, job.attempt, { retries: stage.slurm.retries, retryOn: stage.slurm.retry_on })) {
      this.warn(`${stage.name}: job ${job.id} ended ${verdict.state} (${verdict.reason}); resubmitting (retry ${job.attempt} of ${stage.slurm.retries})`);
      await this.requeueDependents(stage.name);
      this.tracked.set(stage.name, { status: 'waiting', stage, attempts: job.attempt });
      return;
    }
    await this.fail(stage, `job ${job.id} ended ${verdict.state}: ${verdict.reason}${await this.failureTail(stage, job)}`, durationS);
  }

  /**
   * The end of the job's stderr; when that is empty (the stage failed cleanly and `run-stage`
   * wrote its error to the stage log, as it does for the command's own stderr), the stage log's.
   */
  private async failureTail(stage: PlannedStage, job: Job): Promise<string> {
    for (const file of [job.stderrPath, this.request.store.logPath(this.pipeline, stage.name)]) {
      const tail = await tailLines(file, STDERR_TAIL_LINES);
      if (tail) return `\n--- last lines of ${file} ---\n${tail}`;
    }
    return '';
  }

  /**
   * Ends a stage as failed and cancels the jobs waiting on it. Slurm would cancel those itself
   * (DependencyNeverSatisfied) unless the job "completed" without publishing; either way the
   * user is told why here rather than by a bare CANCELLED.
   */
  private async fail(stage: PlannedStage, message: string, durationS: number): Promise<void> {
    this.finish(stage, this.failed(stage, message, durationS));
    const dependents = this.submitted().filter((d) => this.dependsOn(d.stage, stage.name));
    await this.cancelJobs(dependents.map((d) => d.job.id));
    for (const d of dependents) this.finish(d.stage, this.skipped(d.stage, `upstream ${stage.name} failed`));
  }

  /**
   * A retried stage gets a new job id, so jobs submitted after the old one would wait on a job
   * that failed: cancel them and submit them again once the new job exists.
   */
  private async requeueDependents(stageName: string): Promise<void> {
    const dependents = this.submitted().filter((t) => this.dependsOn(t.stage, stageName));
    await this.cancelJobs(dependents.map((t) => t.job.id));
    for (const t of dependents) this.tracked.set(t.stage.name, { status: 'waiting', stage: t.stage, attempts: t.job.attempt - 1 });
  }

  /** Whether `stage` needs `upstream`, directly or through stages of this request. */
  private dependsOn(stage: PlannedStage, upstream: string): boolean {
    return stage.needs.some((need) => {
      const needed = this.tracked.get(need)?.stage;
      return need === upstream || (needed !== undefined && this.dependsOn(needed, upstream));
    });
  }

  /** --on-error fail: jobs that have not started are cancelled; running ones finish. */
  private async cancelPending(): Promise<void> {
    const pending = this.submitted().filter((t) => t.job.state === undefined || t.job.state === 'PENDING');
    await this.cancelJobs(pending.map((t) => t.job.id));
    for (const t of pending) this.finish(t.stage, this.skipped(t.stage, `cancelled before it started: ${this.stoppedBy} failed (--on-error fail)`));
  }

  /** Ctrl-C: cancel every job this run submitted; local stages see the signal themselves. */
  private async cancelAll(): Promise<void> {
    const submitted = this.submitted();
    await this.cancelJobs(submitted.map((t) => t.job.id));
    for (const t of submitted) {
      // A job may have published between the last poll and the abort: its artifact is whole, so say so.
      // (A --force'd stage's old artifact is there from the start, so it proves nothing.)
      const published = !this.request.plan.forced.has(t.stage.name) && (await this.request.store.hasObject(t.stage.fingerprint));
      this.finish(t.stage, published
        ? { ...this.base(t.stage), state: 'succeeded', durationS: (Date.now() - (t.startedAt ?? t.submittedAt)) / 1000 }
        : { ...this.base(t.stage), state: 'cancelled', durationS: 0, message: `cancelled: scancel ${t.job.id}` });
    }
    for (const t of this.tracked.values()) {
      if (t.status === 'waiting') this.finish(t.stage, this.skipped(t.stage, 'cancelled before it started'));
    }
    await this.general.onIdle();
  }

  private async cancelJobs(ids: string[]): Promise<void> {
    try {
      await this.client.cancel(ids);
    } catch (error) {
      this.warn(`scancel ${ids.join(' ')} failed: ${(error as Error).message}; cancel them by hand`);
    }
  }

  private finish(stage: PlannedStage, result: StageResult): void {
    this.tracked.set(stage.name, { status: 'done', stage, result });
    if (result.state === 'failed' && this.request.onError === 'fail') this.stoppedBy ??= stage.name;
    this.recorder.finish(stage.name, result.state);
    this.request.emit({ type: 'end', result });
  }

  private submitted(): Extract<Tracked, { status: 'submitted' }>[] {
    return [...this.tracked.values()].filter((t): t is Extract<Tracked, { status: 'submitted' }> => t.status === 'submitted');
  }

  private pollSeconds(): number {
    const active = this.submitted();
    return Math.min(...(active.length > 0 ? active : [...this.tracked.values()]).map((t) => t.stage.slurm.poll_s));
  }

  private base(stage: PlannedStage): Pick<StageResult, 'stage' | 'fingerprint' | 'logPath'> {
    return { stage: stage.name, fingerprint: stage.fingerprint, logPath: this.request.store.logPath(this.pipeline, stage.name) };
  }

  private failed(stage: PlannedStage, message: string, durationS: number): StageResult {
    return { ...this.base(stage), state: 'failed', durationS, message };
  }

  private skipped(stage: PlannedStage, message: string): StageResult {
    return { ...this.base(stage), state: 'skipped', durationS: 0, message };
  }

  private warn(message: string): void {
    process.stderr.write(`slurm: ${message}\n`);
  }
}
