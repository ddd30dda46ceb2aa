/**
 * Builds one planned stage in this process: the unit of work of every executor (the local one
 * calls it directly; a Slurm job runs `pipeline run-stage`, which calls it on the node).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Rng } from '../rng.ts';
import { producedKind, type InputArtifact, type Manifest, type StageOutcome } from '../stage-api.ts';
import type { Plan, PlannedStage } from '../plan.ts';
import { exists, freeBytes, readText, writeFileAtomic } from '../store/fs-util.ts';
import { describeProblems } from '../store/object-check.ts';
import { damagedMessage, StoreError, type ArtifactStore } from '../store/store.ts';
import { payloadFiles } from './payload.ts';
import { stepCheckpoints } from './checkpoints.ts';
import { makeInputs, stepMetricsLog, openStageLog, progressReporter, truncateMetrics } from './context.ts';
import type { StageEvent, StageResult } from './types.ts';

export interface RunStageOptions {
  signal: AbortSignal;
  emit(event: StageEvent): void;
}

export async function runStageInProcess(plan: Plan, stage: PlannedStage, options: RunStageOptions): Promise<StageResult> {
  const { store, loaded } = plan;
  const pipeline = loaded.config.name;
  const logPath = store.logPath(pipeline, stage.name);
  await fs.mkdir(path.dirname(logPath), { recursive: true });
  const log = openStageLog(logPath);
  const started = Date.now();
  options.emit({ type: 'start', stage: stage.name, time: started });
  const result = (state: StageResult['state'], message?: string): StageResult => ({
    stage: stage.name,
    fingerprint: stage.fingerprint,
    state,
    durationS: (Date.now() - started) / 1000,
    logPath,
    ...(message === undefined ? {} : { message }),
  });
  try {
    log.info(`stage ${stage.name} (${stage.type.name} ${stage.type.version}) fingerprint ${stage.fingerprint}`);
    const workDir = store.workDir(stage.fingerprint);
    const checkpoints = stepCheckpoints(workDir);
    const resumed = await checkpoints.latest();
    if (resumed) log.info(`resuming from the step ${resumed.step} checkpoint`);
    const outDir = await freshOutDir(workDir, resumed?.step);

    const inputs = await readInputs(store, stage);
    const outcome: StageOutcome | void = await checkingInputs(store, stage.name, inputs, () => stage.type.run({
      pipeline,
      stage: stage.name,
      params: stage.params,
      inputs: makeInputs(stage.name, inputs),
      outDir,
      workDir,
      configDir: loaded.dir,
      seed: stage.fingerprintInput.seed,
      rng: new Rng(stage.fingerprintInput.seed, stage.name),
      engine: loaded.config.engine,
      log: {
        ...log,
        warn: (message) => {
          log.warn(message);
          options.emit({ type: 'warning', stage: stage.name, message });
        },
      },
      metrics: stepMetricsLog(outDir),
      progress: progressReporter((done, total, unit) => options.emit({ type: 'progress', stage: stage.name, done, total, unit })),
      signal: options.signal,
      checkpoints,
    }));
    // The stage returned normally, so its output is complete even if a stop was asked meanwhile.
    const files = await payloadFiles(outDir);
    const manifest: Manifest = {
      fingerprint: stage.fingerprint,
      pipeline,
      stage: stage.name,
      type: stage.fingerprintInput.type,
      kind: producedKind(stage.type, stage.params),
      version: stage.type.version,
      // As fingerprinted: a user stage's `with:` as written (plan.ts), everything else's after its schema.
      params: stage.fingerprintInput.params,
      inputs: stage.fingerprintInput.inputs,
      userFiles: stage.fingerprintInput.userFiles,
      seed: stage.fingerprintInput.seed,
      engineConfig: loaded.config.engine,
      ...(outcome?.engine ? { engine: outcome.engine } : {}),
      created: new Date().toISOString(),
      durationS: (Date.now() - started) / 1000,
      metrics: outcome?.metrics ?? {},
      ...(outcome?.checks && outcome.checks.length > 0 ? { checks: outcome.checks } : {}),
      files,
    };
    await store.publish(outDir, manifest, { replace: plan.forced.has(stage.name) });
    await store.writeRef(pipeline, stage.name, stage.fingerprint);
    // Published: what is left of the work folder is garbage, and failing to remove it fails nothing.
    await store.removeWork(stage.fingerprint).catch((error: unknown) => log.warn(`could not remove ${workDir}: ${(error as Error).message} (gc removes it)`));
    log.info(`published ${store.objectDir(stage.fingerprint)}`);
    return result('succeeded');
  } catch (thrown) {
    const cancelled = options.signal.aborted;
    const error = (await explainStageDiskFull(thrown, store.workDir(stage.fingerprint))) as Error;
    if (!cancelled) error.message += await fullDiskHint(store.workDir(stage.fingerprint));
    log.warn(cancelled ? 'cancelled; nothing published' : `failed: ${error.stack ?? String(error)}`);
    return result(cancelled ? 'cancelled' : 'failed', cancelled ? 'cancelled' : error.message);
  } finally {
    await log.close();
  }
}

/** Each input, checked whole and unchanged (the cheap check) before the stage may read it. */
async function readInputs(store: ArtifactStore, stage: PlannedStage): Promise<InputArtifact[]> {
  const inputs: InputArtifact[] = [];
  for (const [name, fingerprint] of Object.entries(stage.fingerprintInput.inputs)) {
    const checked = await store.checkObject(fingerprint);
    if (checked.state === 'missing') throw new Error(`input ${name} (${fingerprint}) is not in the store ${store.root}`);
    if (checked.state === 'damaged') throw new StoreError(`input ${name}: ${damagedMessage(store.objectDir(fingerprint), checked.problems)}`);
    inputs.push({ stage: name, kind: checked.manifest.kind, fingerprint, dir: store.objectDir(fingerprint), manifest: checked.manifest });
  }
  return inputs;
}

/**
 * Runs the stage, then checks that its inputs are as published: permissions keep a stage from
 * writing into them (makeReadOnly), except one running as root; this names what it changed.
 * The changed input is then damaged, so the next plan rebuilds it.
 */
async function checkingInputs<T>(store: ArtifactStore, stage: string, inputs: readonly InputArtifact[], run: () => Promise<T>): Promise<T> {
  let outcome: { value: T } | { error: unknown };
  try {
    outcome = { value: await run() };
  } catch (error) {
    outcome = { error };
  }
  for (const input of inputs) {
    const checked = await store.checkObject(input.fingerprint);
    if (checked.state !== 'ok') {
      const what = checked.state === 'missing' ? 'it is gone' : describeProblems(checked.problems);
      throw new Error(`stage ${stage} changed its input ${input.stage} (${input.dir}): ${what}; a stage writes only under its output and work folders, and the next run rebuilds ${input.stage}`);
    }
  }
  if ('error' in outcome) throw outcome.error;
  return outcome.value;
}

/** A stage's own write that hit a full disk says which file system, and what is free on it. */
async function explainStageDiskFull(error: unknown, workDir: string): Promise<unknown> {
  const code = (error as NodeJS.ErrnoException).code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return error;
  const free = await freeBytes(workDir);
  const at = (error as NodeJS.ErrnoException).path ?? workDir;
  return new Error(`no space left on the device of ${at}${free === undefined ? '' : ` (${free} B free)`}: ${(error as Error).message}`);
}

/** Below this many free bytes a failure is likely the disk's (a command's own ENOSPC reaches us as its exit code). */
const NEARLY_FULL_BYTES = 64 * 1024;

async function fullDiskHint(workDir: string): Promise<string> {
  const free = await freeBytes(workDir);
  return free !== undefined && free < NEARLY_FULL_BYTES ? ` (the file system of ${workDir} has ${free} B free: is the disk full?)` : '';
}

const CURRENT_OUT = 'OUT';

/**
 * A new output folder for this attempt, `work/<fp>/out-<id>`, named in `work/<fp>/OUT`. Never the
 * previous attempt's: a process that attempt started may have outlived it (a killed runner cannot
 * stop a detached grandchild) and still write by path into its folder, which must not be published.
 * When resuming from `resumedStep`, the previous attempt's output (its metrics) is copied over,
 * less the lines past that step; older folders are removed.
 */
async function freshOutDir(workDir: string, resumedStep: number | undefined): Promise<string> {
  await fs.mkdir(workDir, { recursive: true });
  const previous = (await readText(path.join(workDir, CURRENT_OUT)))?.trim();
  const name = `out-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const outDir = path.join(workDir, name);
  if (resumedStep !== undefined && previous && (await exists(path.join(workDir, previous)))) {
    await fs.cp(path.join(workDir, previous), outDir, { recursive: true });
    await truncateMetrics(outDir, resumedStep);
  } else {
    await fs.mkdir(outDir);
  }
  await writeFileAtomic(path.join(workDir, CURRENT_OUT), `${name}\n`);
  for (const entry of await fs.readdir(workDir)) {
    // Best effort: a process an earlier attempt left behind may still write there (gc removes it later).
    if (/^out(-|$)/.test(entry) && entry !== name) await fs.rm(path.join(workDir, entry), { recursive: true, force: true, maxRetries: 3 }).catch(() => {});
  }
  return outDir;
}

/**
 * The command a remote job runs to build `stage` exactly as this run planned it (see types.ts).
 * argv[0] is node; the rest is absolute so it works from any folder on a shared file system.
 */
export function runStageCommand(plan: Plan, stage: PlannedStage, lockToken: string): string[] {
  const bin = path.resolve(import.meta.dirname, '..', '..', 'bin', 'pipeline.js');
  return [
    process.execPath,
    bin,
    'run-stage',
    plan.loaded.file,
    stage.name,
    '--store',
    plan.store.root,
    ...plan.loaded.overrides.flatMap((flag) => ['--set', flag]),
    ...(plan.forced.has(stage.name) ? ['--force'] : []),
    '--lock-token',
    lockToken,
    '--expect-fingerprint',
    stage.fingerprint,
  ];
}
