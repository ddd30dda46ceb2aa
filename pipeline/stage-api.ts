/**
 * The contract between the orchestrator and every stage, built-in or user-written.
 *
 * A stage type is a value (no classes, no inheritance): a zod schema for its params, a version that
 * goes into the fingerprint, a resource class the scheduler uses, and `run`. The orchestrator
 * resolves inputs, makes the folders, and publishes `outDir` atomically when `run` resolves.
 *
 * Rules for stage modules:
 * - Never re-state a default in code (`params.x ?? 1`): defaults live in the schema, once.
 * - Do not import heavy libraries (tfjs, transformers) at module top level: `import()` them inside
 *   `run`, so `pipeline plan`/`validate` stay fast.
 * - Write only under `outDir` (the payload) and `workDir` (scratch and step checkpoints).
 * - Check `signal.aborted` (or pass `signal` on) between units of work; on abort, throw.
 */
import type { z } from 'zod';
import type { Rng } from './rng.ts';

/** The scheduler runs at most `resources.train` stages of class `train` at once (default 1). */
export type ResourceClass = 'light' | 'train';

/** What a stage's payload is. Consumers look their inputs up by kind, not by producer. */
export type ArtifactKind =
  | 'dataset' // train/dev/test JSONL of relevance examples (+ world extras)
  | 'kg' // knowledge graph
  | 'prompts' // chat prompts with gold and meta
  | 'sft-set' // prompt + verified completion
  | 'checkpoint' // HF-layout model folder
  | 'samples' // N verified samples per prompt
  | 'eval' // metrics.json, predictions.jsonl, report fragment
  | 'distilled' // a distilled judge: model.json (DeepBoW)
  | 'deployment' // a serving bundle: deployment.json, the head-tier cache
  | 'embeddings' // vectors for a catalog's items and a dataset's queries
  | 'index' // a searchable catalog: items, lexical and dense indexes
  | 'retrieval' // the items retrieved for each query of a split, per method
  | 'rewrites' // rewritten queries, with the feedback that selected them
  | 'files'; // anything else (exec, user stages)

export interface StageType<Schema extends z.ZodType = z.ZodType> {
  /** The name used in YAML `uses:`. */
  name: string;
  /** Implementation version; bump it when the same inputs would now give different output. */
  version: string;
  /** One line for `pipeline stages`. */
  description: string;
  /** zod schema of `with:`; every key has `.default(...)` (unless required) and `.describe(...)`. */
  params: Schema;
  /**
   * Keys of `with:` that were renamed: old name -> new name. A config that still writes the old
   * name loads as if it wrote the new one, with a warning naming the new key (`validate`, `plan`,
   * `run`); writing both is an error. Keep an entry for one release, then drop it.
   */
  renamedParams?: Readonly<Record<string, string>>;
  produces: ArtifactKind;
  /** The kind for these params when it depends on them (exec's `produces`); `produces` otherwise. */
  producesFor?(params: z.output<Schema>): ArtifactKind;
  resources: ResourceClass;
  /**
   * Files outside the store that this stage reads given its params (dataset files, reward modules,
   * prompt templates), as paths relative to the config file's folder. Their bytes go into the
   * fingerprint, so editing one reruns the stage. `configDir` is that folder, for a stage whose
   * list depends on what a folder holds (a sharded model's index names its shards).
   */
  userFiles?(params: z.output<Schema>, configDir: string): string[];
  /**
   * Kinds of artifact this stage reads given its params: its `needs` must give at least one of each.
   * `validate` and `plan` check it, so a missing input fails before anything runs (for a user stage,
   * whose file only `run` imports, `run` checks it before anything runs).
   */
  requires?(params: z.output<Schema>): ArtifactKind[];
  /**
   * Checks of the params that need files or the stage's `needs` but no training (a reward module
   * that must load, a param naming an input), run by `validate` and `plan`. Each problem names its
   * key path under `with:`. A user stage's check runs at `run` (read-only commands do not import it).
   */
  check?(params: z.output<Schema>, context: { configDir: string; needs: readonly string[] }): Promise<ParamProblem[]>;
  /**
   * What this stage published outside the store (a cache in a shared Redis) that a whole artifact in
   * the store cannot vouch for: undefined when it is all there, or what is missing. `plan` (hence
   * `status`, `run`, `serve`) asks it of a cached artifact and reruns the stage when something is.
   */
  checkPublished?(artifact: { dir: string; params: z.output<Schema> }): Promise<string | undefined>;
  run(ctx: StageContext<z.output<Schema>>): Promise<StageOutcome | void>;
}

export interface ParamProblem {
  /** Key path under the stage's `with:`, e.g. ['rewards', 1, 'use']. */
  path: (string | number)[];
  message: string;
}

export interface Manifest {
  fingerprint: string;
  pipeline: string;
  stage: string;
  /** Stage type (`uses`). */
  type: string;
  kind: ArtifactKind;
  version: string;
  params: unknown;
  /** Stage name -> fingerprint of each input. */
  inputs: Record<string, string>;
  /** User file path (as written in YAML) -> sha256. */
  userFiles: Record<string, string>;
  seed: number;
  /** The pipeline's `engine:` block as fingerprinted (what was asked for). */
  engineConfig?: EngineConfig;
  /** What the stage reported it ran on (what was used). */
  engine?: EngineRecord;
  created: string;
  durationS: number;
  metrics: Record<string, unknown>;
  /** The quality checks the stage reported (StageOutcome.checks); absent when it reported none. */
  checks?: QualityCheck[];
  /**
   * Payload file path (relative) -> sha256, size, and modification time when published (the store's
   * cheap check compares size and time on every use; manifests written before it have no time).
   */
  files: Record<string, { sha256: string; bytes: number; mtimeMs?: number }>;
}

export interface InputArtifact {
  /** The stage name in this pipeline that produced it. */
  stage: string;
  kind: ArtifactKind;
  fingerprint: string;
  /** Absolute path of the published payload folder. Read only. */
  dir: string;
  manifest: Manifest;
}

export interface Inputs {
  /** Every input, keyed by stage name, in `needs` order. */
  readonly all: readonly InputArtifact[];
  /** The one input of this kind; an error naming the stage and the kind if there is none or several. */
  one(kind: ArtifactKind): InputArtifact;
  /** All inputs of this kind (possibly none), in `needs` order. */
  many(kind: ArtifactKind): InputArtifact[];
  /** The input produced by this stage name, if it is in `needs`. */
  byStage(stage: string): InputArtifact | undefined;
}

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  debug(message: string): void;
}

/** A stage's per-step training figures (`ctx.metrics`): not the judge's grade agreement, not the server's Prometheus metrics. */
export interface StepMetricsLog {
  /** Appends one JSON line `{step, ...values, time}` to `metrics.jsonl` in the artifact. */
  log(step: number, values: Record<string, number | string | null>): void;
}

export interface ProgressReporter {
  /** `done` of `total` units (`unit` e.g. "steps", "examples"); a TTY shows a bar, CI plain lines. */
  update(done: number, total: number, unit?: string): void;
}

export interface StepCheckpoint<State> {
  step: number;
  state: State;
  /** Folder holding whatever `save` wrote (weights, optimizer moments). */
  dir: string;
}

/**
 * Step checkpoints live in the stage's work folder, which survives a crash or Ctrl-C and belongs to
 * one fingerprint. A rerun of the same fingerprint resumes from `latest()`; the metrics writer then
 * drops lines whose step is past the restored step, so the curve has no duplicates.
 */
export interface StepCheckpoints {
  latest<State = unknown>(): Promise<StepCheckpoint<State> | undefined>;
  /** `write` fills a fresh folder; it becomes `latest` atomically. Older ones beyond `keep` go. */
  save<State>(step: number, state: State, write?: (dir: string) => Promise<void>): Promise<void>;
}

/** The pipeline-level `engine:` block, passed through untouched to stages that build models. */
export interface EngineConfig {
  backend: 'auto' | 'webgpu' | 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
  /** Training replicas that split each batch (wasm and cpu backends); see engineSchema. */
  data_parallel?: 'auto' | number;
  /** What decodes and scores: onnxruntime (an ONNX export), tfjs, or auto; see engineSchema. */
  inference?: 'auto' | 'onnxruntime' | 'tfjs';
  [key: string]: unknown;
}

/** What a model stage records about the tensor runtime it ran on. */
export interface EngineRecord {
  backend: string;
  tfjs: string;
  [key: string]: string;
}

export interface StageContext<P> {
  pipeline: string;
  /** This stage's name in the YAML. */
  stage: string;
  params: P;
  inputs: Inputs;
  /** Write the payload here. Published (renamed into the store) only when `run` resolves. */
  outDir: string;
  /** Scratch space and step checkpoints; kept across reruns of the same fingerprint. */
  workDir: string;
  /** Folder of the YAML file; resolve user paths against it. */
  configDir: string;
  seed: number;
  /** Seeded from (pipeline seed, stage name): same config, same stream. */
  rng: Rng;
  engine: EngineConfig;
  log: Logger;
  metrics: StepMetricsLog;
  progress: ProgressReporter;
  signal: AbortSignal;
  checkpoints: StepCheckpoints;
}

export interface StageOutcome {
  /** Summary figures, stored in `manifest.metrics` and shown by `pipeline show`. */
  metrics?: Record<string, unknown>;
  engine?: EngineRecord;
  /**
   * Named checks of the output's quality. A failed check does not fail the stage (its output is
   * published): `pipeline run` lists the failed checks of every planned stage, built or cached, at
   * the end, and `--strict` turns any into exit code 1 after publishing.
   */
  checks?: QualityCheck[];
}

/** A stage's judgement of its own output: e.g. `{name: 'not-degenerate', passed: false, message: ...}`. */
export interface QualityCheck {
  /** Short, stable name (a kebab-case key). */
  name: string;
  passed: boolean;
  /** What was measured against what bound; shown when the check fails. */
  message: string;
}

/** The kind of artifact a stage of `type` with these params produces. */
export function producedKind(type: StageType, params: unknown): ArtifactKind {
  return type.producesFor?.(params) ?? type.produces;
}

/** Helper for stage modules: keeps the schema's types flowing into `run`. */
export function defineStage<Schema extends z.ZodType>(stage: StageType<Schema>): StageType<Schema> {
  return stage;
}

/**
 * Lets the event loop run (signal handlers, progress timers). Tensor work is synchronous, so a
 * training loop that never yields cannot be stopped with Ctrl-C: call this once per step or batch.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
