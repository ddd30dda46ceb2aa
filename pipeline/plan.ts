/**
 * Planning: fingerprint every stage (in topological order, since a stage's fingerprint includes its
 * inputs') and decide what to do with each, with the reason in words. Pure reading: the store is
 * not modified, so `pipeline plan` is exactly what `pipeline run` would do.
 */
import * as path from 'node:path';
import type { ResourceClass, StageType } from './stage-api.ts';
import type { LoadedConfig } from './config/load.ts';
import { locate } from './config/locate.ts';
import type { ExecutorName, SlurmConfig } from './config/schema.ts';
import type { Diagnostic } from './diagnostics.ts';
import { explainChange, fingerprintStage, shortFingerprint, type Fingerprint, type FingerprintInput } from './fingerprint.ts';
import { selectStages, topologicalOrder, type Selection } from './graph.ts';
import { unimportedStageAnswers } from './plan-user-stage.ts';
import { latestCheckpointStep } from './executor/checkpoints.ts';
import { exists, sha256File } from './store/fs-util.ts';
import { describeProblems } from './store/object-check.ts';
import type { ArtifactStore } from './store/store.ts';

export type Decision =
  /** An artifact with this fingerprint is in the store. */
  | { action: 'cached' }
  /** Build it; `reasons` say why (never built, params changed ..., forced, resuming ...). */
  | { action: 'run'; reasons: string[] }
  /** Not selected (`--only/--from/--until`); its artifact, if any, is read from the store. */
  | { action: 'unselected'; available: boolean };

export interface PlannedStage {
  name: string;
  type: StageType;
  params: unknown;
  needs: string[];
  resources: ResourceClass;
  executor: ExecutorName;
  /** The top-level `slurm:` block with this stage's overrides applied. */
  slurm: SlurmConfig;
  fingerprint: Fingerprint;
  fingerprintInput: FingerprintInput;
  /** The fingerprint the ref pointed at when planned (the previous artifact), if any. */
  previous?: Fingerprint;
  decision: Decision;
}

export interface Plan {
  loaded: LoadedConfig;
  store: ArtifactStore;
  /** Topological order. */
  stages: PlannedStage[];
  /** `--force`d stage names: their artifact is rebuilt and replaced even when cached. */
  forced: ReadonlySet<string>;
}

export interface PlanOptions {
  selection?: Selection;
  force?: readonly string[];
}

export type PlanResult = { ok: true; plan: Plan } | { ok: false; diagnostics: Diagnostic[] };

export async function planPipeline(loaded: LoadedConfig, store: ArtifactStore, options: PlanOptions = {}): Promise<PlanResult> {
  const { config } = loaded;
  const graph = new Map([...loaded.stages.keys()].map((name) => [name, config.stages[name]?.needs ?? []]));
  const { selected, diagnostics } = selectStages(graph, options.selection ?? {});
  const forced = new Set(options.force ?? []);
  for (const name of forced) {
    if (!graph.has(name)) diagnostics.push({ location: { origin: `--force ${name}` }, message: `no stage named "${name}"` });
  }

  const planned = new Map<string, PlannedStage>();
  // Many stages often share one module or data file: hash each file once per plan.
  const hashes = new Map<string, Promise<string | undefined>>();
  const hashOnce = (absolute: string) => {
    if (!hashes.has(absolute)) hashes.set(absolute, exists(absolute).then((found) => (found ? sha256File(absolute) : undefined)));
    return hashes.get(absolute) as Promise<string | undefined>;
  };
  for (const name of topologicalOrder(graph)) {
    const loadedStage = loaded.stages.get(name);
    const stageConfig = config.stages[name];
    if (!loadedStage || !stageConfig) throw new Error(`Internal error: stage ${name} was validated but not loaded`);
    const previous = await store.readRef(config.name, name);
    const { userStage } = loadedStage;
    let version = loadedStage.type.version;
    let files = [...(userStage ? [userStage.file] : []), ...(loadedStage.type.userFiles?.(loadedStage.params, loaded.dir) ?? [])];
    const userFiles: Record<string, string> = {};
    // A forecast's files are what the stage declared last time: one since deleted is no error of this config.
    let forecast = false;
    if (userStage && !userStage.imported) {
      const moduleHash = await hashOnce(path.resolve(loaded.dir, userStage.file));
      const answers = await unimportedStageAnswers(store, name, stageConfig.uses, userStage, moduleHash, previous);
      ({ version, files } = answers);
      forecast = !answers.exact;
    }
    for (const file of files) {
      const absolute = path.resolve(loaded.dir, file);
      const hash = await hashOnce(absolute);
      if (hash === undefined && forecast) continue;
      if (hash === undefined) {
        diagnostics.push({
          location: locate(loaded.source, ['stages', name, 'with']),
          path: ['stages', name],
          message: `user file not found: ${file} (looked for ${absolute})`,
        });
        continue;
      }
      userFiles[file] = hash;
    }
    const inputs = Object.fromEntries(stageConfig.needs.map((need) => [need, planned.get(need)?.fingerprint ?? '']));
    const fingerprintInput: FingerprintInput = {
      stage: name,
      type: stageConfig.uses,
      version,
      params: userStage ? userStage.written : loadedStage.params,
      inputs,
      seed: config.seed + (stageConfig.seed_offset ?? 0),
      userFiles,
      engine: config.engine,
    };
    const fingerprint = fingerprintStage(fingerprintInput);
    const stored = await store.checkObject(fingerprint);
    const built = stored.state === 'ok';
    let decision: Decision;
    if (!selected.has(name)) decision = { action: 'unselected', available: built };
    else if (built && !forced.has(name)) {
      const missing = await publishedProblem(loadedStage.type, store.objectDir(fingerprint), loadedStage.params);
      decision = missing === undefined ? { action: 'cached' } : { action: 'run', reasons: [`what it published outside the store is missing: ${missing}`] };
    } else {
      // A damaged object (a file missing or changed, a broken manifest) is rebuilt, never used.
      const damaged = stored.state === 'damaged' ? [`its stored artifact is damaged (${describeProblems(stored.problems, 2)})`] : [];
      const reasons = await reasonsToRun(store, fingerprintInput, fingerprint, previous, forced.has(name));
      decision = { action: 'run', reasons: [...damaged, ...reasons] };
    }
    planned.set(name, {
      name,
      type: loadedStage.type,
      params: loadedStage.params,
      needs: stageConfig.needs,
      resources: stageConfig.resources ?? loadedStage.type.resources,
      executor: stageConfig.executor ?? config.executor,
      slurm: { ...config.slurm, ...definedOnly(stageConfig.slurm ?? {}) },
      fingerprint,
      fingerprintInput,
      previous,
      decision,
    });
  }

  for (const stage of planned.values()) {
    if (stage.decision.action !== 'run') continue;
    for (const need of stage.needs) {
      const upstream = planned.get(need);
      if (upstream?.decision.action === 'unselected' && !upstream.decision.available) {
        diagnostics.push({
          path: ['stages', stage.name, 'needs'],
          location: locate(loaded.source, ['stages', stage.name, 'needs', stage.needs.indexOf(need)]),
          message: `${stage.name} needs ${need}, which is not selected and was never built with its current configuration (${shortFingerprint(upstream.fingerprint)}); run it first, or widen --only/--from/--until`,
        });
      }
    }
  }
  if (diagnostics.length > 0) return { ok: false, diagnostics };
  return { ok: true, plan: { loaded, store, stages: [...planned.values()], forced } };
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

async function reasonsToRun(
  store: ArtifactStore,
  input: FingerprintInput,
  fingerprint: Fingerprint,
  previous: Fingerprint | undefined,
  forced: boolean,
): Promise<string[]> {
  const reasons: string[] = [];
  if (forced) reasons.push('forced');
  else if (previous === undefined) reasons.push('never built');
  else {
    const checked = await store.checkObject(previous);
    if (previous === fingerprint) {
      // Nothing changed: the artifact is gone (a damaged one is named by the caller).
      if (checked.state === 'missing') reasons.push(`its artifact ${shortFingerprint(previous)} is missing from the store`);
    } else if (checked.state === 'missing' || !checked.manifest) {
      reasons.push(`previous artifact ${shortFingerprint(previous)} ${checked.state === 'missing' ? 'missing from' : 'damaged in'} the store`);
    } else {
      // A damaged previous object still explains what changed when its manifest parsed.
      reasons.push(...explainChange(checked.manifest, input));
    }
  }
  const step = await latestCheckpointStep(store.workDir(fingerprint));
  if (step !== undefined) reasons.push(`resuming from step ${step}`);
  return reasons;
}

/** One line per stage, as `plan` and `run` print them: `sft: cached (3fa9c1d2)`. */
export function describeDecision(stage: PlannedStage): string {
  const fp = shortFingerprint(stage.fingerprint);
  switch (stage.decision.action) {
    case 'cached':
      return `${stage.name}: cached (${fp})`;
    case 'unselected':
      return `${stage.name}: not selected, ${stage.decision.available ? `using ${fp} from the store` : 'not built'}`;
    case 'run': {
      const verb = stage.previous === undefined || stage.decision.reasons[0] === 'forced' ? 'run' : 'rerun';
      return `${stage.name}: ${verb} (${fp}), ${stage.decision.reasons.join('; ')}`;
    }
  }
}

/** A cached stage's checkPublished, its throw read as what is missing. */
async function publishedProblem(type: StageType, dir: string, params: unknown): Promise<string | undefined> {
  if (!type.checkPublished) return undefined;
  return type.checkPublished({ dir, params }).catch((error: unknown) => (error as Error).message);
}

export function stagesToRun(plan: Plan): PlannedStage[] {
  return plan.stages.filter((stage) => stage.decision.action === 'run');
}
