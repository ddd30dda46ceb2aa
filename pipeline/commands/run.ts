/** `pipeline run`: lock the store, plan, execute what is needed, record the run. */
import * as os from 'node:os';
import { describeDecision, stagesToRun, type Plan } from '../plan.ts';
import { executors } from '../executor/index.ts';
import type { OnError, StageResult } from '../executor/types.ts';
import { plainDisplay, ttyDisplay, type RunDisplay } from '../progress/display.ts';
import { acquireStoreLock, describeHolder, isStale, LockBusyError, readLock, type StoreLock } from '../store/lock.ts';
import type { QualityCheck } from '../stage-api.ts';
import type { ArtifactStore } from '../store/store.ts';
import { faultPoint } from '../store/fault.ts';
import { DiskFullError } from '../store/fs-util.ts';
import type { Selection } from '../graph.ts';
import { EXIT, loadOrThrow, planOrThrow, storeFor, type CommandIo, type ConfigOptions } from './common.ts';

export interface RunOptions extends ConfigOptions {
  selection: Selection;
  force: string[];
  concurrency?: number;
  onError: OnError;
  wait: boolean;
  /** Exit 1 (after publishing) when any planned stage's output failed a quality check. */
  strict?: boolean;
  breakLock?: boolean;
}

/**
 * What `status` and a later `report` read: `<store>/runs/<pipeline>/latest.json`. Written when the
 * run starts (status `running`, no stages, `finished` empty) and again when it ends.
 */
export interface RunRecord {
  pipeline: string;
  config: string;
  started: string;
  finished: string;
  status: 'running' | 'succeeded' | 'failed' | 'cancelled';
  /** Seconds from start to end of the run (0 while running). */
  wallS: number;
  /** The process that ran it, and the token of the store lock it held. */
  pid: number;
  lockToken: string;
  stages: {
    name: string;
    fingerprint: string;
    decision: string;
    state: StageResult['state'] | 'cached' | 'unselected';
    cached: boolean;
    durationS: number;
    /** durationS over the run's wallS: stages that ran side by side overlap, so shares may sum past 1. */
    wallShare: number;
    logPath?: string;
    message?: string;
    /** The quality checks the stage's artifact failed (built now or cached), from its manifest. */
    failedChecks?: QualityCheck[];
  }[];
}

/** A `running` record whose run no longer holds the store lock: its process was killed. */
export type RunStatus = RunRecord['status'] | 'interrupted';
export type LastRun = Omit<RunRecord, 'status'> & { status: RunStatus };

/** The pipeline's latest run record, with its status as it stands now (see RunStatus). */
export async function readLastRun(store: ArtifactStore, pipeline: string): Promise<LastRun | undefined> {
  const record = await store.readLatestRun<RunRecord>(pipeline);
  if (record?.status !== 'running') return record;
  const holder = await readLock(store.root);
  return holder?.token === record.lockToken && !isStale(holder) ? record : { ...record, status: 'interrupted' };
}

export async function runCommand(configPath: string, options: RunOptions, io: CommandIo): Promise<number> {
  const loaded = await loadOrThrow(configPath, options, io, true);
  const store = storeFor(loaded, options, io);
  const controller = new AbortController();
  let lock: StoreLock;
  try {
    lock = await acquireStoreLock(store.root, {
      wait: options.wait,
      command: `pipeline run ${configPath}`,
      signal: controller.signal,
      breakLock: options.breakLock,
      onWait: (holder) => io.err(`waiting for the store lock held by ${describeHolder(holder)} ...`),
      onTakeover: (message) => io.err(message),
    });
  } catch (error) {
    if (error instanceof LockBusyError) {
      io.err(`error: ${error.message}`);
      return EXIT.failed;
    }
    throw error;
  }
  try {
    // What a killed run or gc was deleting: removed before planning, under the lock.
    await store.emptyTrash();
    // Planned under the lock: a run that waited sees what the previous one published.
    const plan = await planOrThrow(loaded, store, { selection: options.selection, force: options.force });
    return await execute(plan, options, lock.token, controller, io);
  } finally {
    await lock.release();
  }
}

async function execute(plan: Plan, options: RunOptions, lockToken: string, controller: AbortController, io: CommandIo): Promise<number> {
  const { config } = plan.loaded;
  const started = new Date();
  const runningRecord: RunRecord = { pipeline: config.name, config: plan.loaded.file, started: started.toISOString(), finished: '', status: 'running', wallS: 0, pid: process.pid, lockToken, stages: [] };
  await plan.store.writeRunRecord(config.name, runningRecord);
  for (const stage of plan.stages) io.out(describeDecision(stage));
  for (const stage of plan.stages) {
    if (stage.decision.action === 'cached' && stage.previous !== stage.fingerprint) {
      await plan.store.writeRef(config.name, stage.name, stage.fingerprint);
    }
  }
  const toRun = stagesToRun(plan);
  let results: StageResult[] = [];
  if (toRun.length > 0) {
    const name = toRun.some((stage) => stage.executor === 'slurm') ? 'slurm' : 'local';
    const load = executors[name];
    if (!load) {
      io.err(`error: executor "${name}" is not available in this build`);
      return EXIT.usage;
    }
    const executor = await load();
    const display: RunDisplay =
      process.stderr.isTTY && !process.env.CI ? await ttyDisplay(toRun.map((s) => s.name)) : plainDisplay(toRun.map((s) => s.name), io.err);
    const stop = (signal: NodeJS.Signals) => {
      if (controller.signal.aborted) {
        io.err(`${signal} again: exiting now; the next run resumes from the last step checkpoints`);
        process.exit(EXIT.cancelled);
      }
      display.message(`${signal}: stopping; nothing unfinished is published (${signal} again to exit at once)`);
      controller.abort();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    try {
      results = await executor.execute({
        plan,
        stages: toRun,
        store: plan.store,
        lockToken,
        concurrency: options.concurrency ?? os.availableParallelism(),
        onError: options.onError,
        signal: controller.signal,
        emit: (event) => display.event(event),
      });
    } finally {
      display.stop();
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  }

  const byStage = new Map(results.map((result) => [result.stage, result]));
  const failed = results.filter((r) => r.state === 'failed');
  const skipped = results.filter((r) => r.state === 'skipped' || r.state === 'cancelled');
  for (const result of failed) io.err(`error: stage ${result.stage} failed: ${result.message}\n  log: ${result.logPath}`);
  if (skipped.length > 0) io.err(`not run: ${skipped.map((r) => `${r.stage} (${r.message})`).join(', ')}`);
  const status = controller.signal.aborted ? 'cancelled' : failed.length > 0 ? 'failed' : 'succeeded';
  const finished = new Date();
  const wallS = (finished.getTime() - started.getTime()) / 1000;
  const failedChecks = await failedChecksOf(plan);
  const record: RunRecord = {
    ...runningRecord,
    finished: finished.toISOString(),
    status,
    wallS,
    stages: plan.stages.map((stage) => {
      const result = byStage.get(stage.name);
      const action = stage.decision.action;
      const durationS = result?.durationS ?? 0;
      const checks = failedChecks.get(stage.name);
      return {
        name: stage.name,
        fingerprint: stage.fingerprint,
        decision: describeDecision(stage),
        state: result?.state ?? (action === 'run' ? 'skipped' : action),
        cached: action === 'cached',
        durationS,
        wallShare: wallS > 0 ? durationS / wallS : 0,
        ...(result ? { logPath: result.logPath } : {}),
        ...(result?.message ? { message: result.message } : {}),
        ...(checks ? { failedChecks: checks } : {}),
      };
    }),
  };
  try {
    faultPoint('run-record:final');
    await plan.store.writeFinalRunRecord(config.name, record);
  } catch (error) {
    if (!(error instanceof DiskFullError)) throw error;
    io.err(`error: ${error.message}; ${plan.store.latestRunPath(config.name)} holds this run's record in short, or is gone`);
    return EXIT.failed;
  }
  const timed = record.stages.filter((s) => s.durationS > 0);
  if (timed.length > 0) io.out(`time: ${wallS.toFixed(1)}s wall; ${timed.map((s) => `${s.name} ${s.durationS.toFixed(1)}s (${Math.round(s.wallShare * 100)}%)`).join(', ')}`);
  for (const [stage, checks] of failedChecks) for (const check of checks) io.err(`check failed: ${stage} ${check.name}: ${check.message}`);
  const built = results.filter((r) => r.state === 'succeeded').length;
  const cached = plan.stages.filter((s) => s.decision.action === 'cached').length;
  io.out(`${status}: ${built} built, ${cached} cached, ${failed.length} failed, ${skipped.length} not run${failedChecks.size > 0 ? `; ${[...failedChecks.values()].flat().length} quality checks failed${options.strict ? ' (--strict: exit 1)' : ''}` : ''}`);
  if (status === 'succeeded' && options.strict && failedChecks.size > 0) return EXIT.failed;
  return status === 'succeeded' ? EXIT.ok : status === 'cancelled' ? EXIT.cancelled : EXIT.failed;
}


/**
 * The quality checks failed by each planned stage's current artifact, built in this run or cached:
 * a cached artifact that failed one is still what the run delivers.
 */
async function failedChecksOf(plan: Plan): Promise<Map<string, QualityCheck[]>> {
  const failed = new Map<string, QualityCheck[]>();
  for (const stage of plan.stages) {
    const manifest = await plan.store.readManifest(stage.fingerprint);
    const checks = (manifest?.checks ?? []).filter((check) => !check.passed);
    if (checks.length > 0) failed.set(stage.name, checks);
  }
  return failed;
}

