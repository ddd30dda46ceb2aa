/**
 * Rewards for GRPO: a registry of built-ins and the loader for user reward files.
 *
 * A reward is a plain function, as in TRL: it gets the batch and returns one value per completion,
 * a number, `null` (not applicable: left out of that reward's mean, contributes 0 to the total), or
 * `{ total, steps }` where `steps` holds one reward per reasoning step for stepwise advantages.
 * It may be async. Each reward is logged under its own name; the total is Σ weight × value. A reward
 * file runs in a worker thread with a time limit per call (reward-files.ts).
 *
 * ```ts
 * // my-reward.ts, used as `rewards: [{ use: ./my-reward.ts, weight: 0.5, with: { target: 'L4' } }]`
 * import type { RewardFunction } from 'lore-pipeline/stages/lib/rl/rewards.ts';
 * const reward: RewardFunction<{ target: string }> = (batch, params) =>
 *   batch.map((x) => (x.parsed.label === undefined ? null : x.parsed.label === params.target ? 1 : 0));
 * export default reward;
 * ```
 */
import { existsSync } from 'node:fs';
import { basename, extname, isAbsolute, resolve } from 'node:path';
import { STEP_NAMES, verifyCompletion, type ParsedCompletion, type ReasoningSteps } from '../relevance/completion.ts';
import { GRADES, type ExampleMeta, type Grade } from '../relevance/types.ts';
import { checkUserModule } from '../../../pipeline/api.ts';
import { DEFAULT_REWARD_TIMEOUT_S, RewardWorker, RewardWorkerStopped, type CallLimits } from './reward-files.ts';
import { z } from 'zod';

export interface RewardInput {
  /** Example id. */
  id: string;
  /** The prompt as the model saw it (chat template applied). */
  prompt: string;
  completion: string;
  parsed: ParsedCompletion;
  gold: Grade;
  meta: ExampleMeta;
  /** The reference reasoning for this example (from the relevance analysis), for step checks. */
  reference: ReasoningSteps;
}

export type RewardValue = number | null | { total: number; steps: number[] };
export type RewardFunction<P = Record<string, unknown>> = (
  batch: RewardInput[],
  params: P,
) => RewardValue[] | Promise<RewardValue[]>;

/** 1 when the completion follows the format exactly, else 0. */
const format: RewardFunction = (batch) => batch.map((x) => (x.parsed.formatOk ? 1 : 0));

/** 1 for the exact grade, else 0 (a missing or invalid answer is 0). */
const label: RewardFunction = (batch) => batch.map((x) => (x.parsed.label === x.gold ? 1 : 0));

/** Partial credit by distance on the ordinal scale: 1 − |predicted − gold| / 3; no answer gets 0. */
const labelDistance: RewardFunction = (batch) =>
  batch.map((x) => {
    if (x.parsed.label === undefined) return 0;
    return 1 - Math.abs(GRADES.indexOf(x.parsed.label) - GRADES.indexOf(x.gold)) / (GRADES.length - 1);
  });

/**
 * Rule-aware reward shaping (TaoSR-AGRL, arXiv 2510.08048, "Rule-aware Reward Shaping": the final
 * judgement decomposed into dense rewards aligned with the relevance criteria). With F the rules
 * that fire for the pair (the reference analysis), v_k ∈ {0, 1} whether step k of the completion
 * verifies against the reference (for the rules step: names exactly F), and ρ = `rule_weight`:
 *
 *   w_k = ρ if k = rules and |F| > 0, else 1
 *   s_k = 1[format ok] · w_k · v_k / Σ_j w_j          (the step's reward, returned in `steps`)
 *   r   = Σ_k s_k ∈ [0, 1]                              (the total)
 *
 * The format gate gives a malformed completion nothing; ρ > 1 makes naming the firing business
 * rules worth more than any other single step. Example (5 steps, rules fire, ρ = 2, Σ w = 6): the
 * first three steps verify, the last two do not: s = [1/6, 1/6, 1/6, 0, 0], r = 1/2.
 */
const stepsParams = z.strictObject({
  rule_weight: z.number().positive().default(2).describe('Weight of the rules step, relative to 1 for the others, when rules fire'),
});
const steps: RewardFunction<z.output<typeof stepsParams>> = (batch, params) =>
  batch.map((x) => {
    const verdict = verifyCompletion(x.parsed, x.reference, x.gold);
    const weights = STEP_NAMES.map((name) => (name === 'rules' && x.reference.rules.length > 0 ? params.rule_weight : 1));
    const totalWeight = weights.reduce((a, b) => a + b, 0);
    const perStep = STEP_NAMES.map((name, k) => (x.parsed.formatOk && verdict.steps[name] ? (weights[k] as number) / totalWeight : 0));
    return { total: perStep.reduce((a, b) => a + b, 0), steps: perStep };
  });

export interface BuiltinReward {
  description: string;
  /** Schema of the reward's `with:` params (defaults documented once, here). */
  params: z.ZodType<Record<string, unknown>>;
  fn: RewardFunction<never>;
}

const noParams = z.strictObject({});

export const builtinRewards: Record<string, BuiltinReward> = {
  format: { description: '1 when the completion follows the format exactly, else 0', params: noParams, fn: format },
  label: { description: '1 for the exact grade, else 0', params: noParams, fn: label },
  label_distance: { description: '1 - |predicted - gold| / 3 on the grade scale', params: noParams, fn: labelDistance },
  steps: {
    description: 'format-gated share of verified reasoning steps, rules step weighted; returns per-step rewards',
    params: stepsParams,
    fn: steps as RewardFunction<never>,
  },
};

export interface RewardSpec {
  use: string;
  weight: number;
  with: Record<string, unknown>;
  /** A reward file's time limit per call (per batch), in seconds; absent: DEFAULT_REWARD_TIMEOUT_S. */
  timeout_s?: number | undefined;
}

export interface LoadedReward {
  /** Logged under this name: the built-in's name or the file's base name. */
  name: string;
  weight: number;
  params: Record<string, unknown>;
  fn: RewardFunction<Record<string, unknown>>;
  /** A reward file (as written in the config): it runs in the reward worker. */
  file?: string;
  /** Ends the reward worker a reward file runs in (closeRewards). */
  close?: () => Promise<void>;
}

export function isRewardFile(use: string): boolean {
  return use.startsWith('.') || isAbsolute(use);
}

/** A reward spec that cannot be used; `key` is the spec's key at fault, for a located config error. */
export class RewardSpecError extends Error {
  constructor(
    message: string,
    readonly key: 'use' | 'with',
  ) {
    super(message);
  }
}

function loadBuiltin(spec: RewardSpec): LoadedReward {
  const builtin = builtinRewards[spec.use];
  if (!builtin) {
    throw new RewardSpecError(`unknown reward "${spec.use}": built-ins are ${Object.keys(builtinRewards).join(', ')}; a file path starts with ./`, 'use');
  }
  const params = builtin.params.safeParse(spec.with);
  if (!params.success) {
    const problems = params.error.issues.map((i) => `${i.path.join('.') || '(with)'}: ${i.message}`).join('; ');
    throw new RewardSpecError(`reward ${spec.use}: bad params: ${problems}`, 'with');
  }
  return { name: spec.use, weight: spec.weight, params: params.data, fn: builtin.fn as LoadedReward['fn'] };
}

function rewardFilePath(spec: RewardSpec, configDir: string): string {
  const path = resolve(configDir, spec.use);
  if (!existsSync(path)) throw new RewardSpecError(`reward file not found: ${spec.use} (looked for ${path})`, 'use');
  return path;
}

/**
 * What validate, plan and the other read-only commands check of a reward, without running any user
 * code: a built-in's name and params; a file's existence, that it compiles and that it has a default
 * export (a static check: user-module.ts). Whether that export is a function is known only once the
 * file is imported, at the start of the stage's run (loadRewards).
 */
export async function checkRewardSpec(spec: RewardSpec, configDir: string): Promise<void> {
  if (!isRewardFile(spec.use)) {
    loadBuiltin(spec);
    return;
  }
  const path = rewardFilePath(spec, configDir);
  const checked = await checkUserModule(path);
  if ('error' in checked) throw new RewardSpecError(`reward ${spec.use}: ${checked.error}`, 'use');
  if (!checked.exports.includes('default')) {
    throw new RewardSpecError(`reward ${spec.use}: the module has no default export; it must export default a function (batch, params) => values`, 'use');
  }
}

/**
 * The rewards of a run. Reward files are imported and called in one worker thread (reward-files.ts),
 * each call limited to the spec's `timeout_s` and stopped when `signal` aborts; end it with
 * closeRewards. Built-ins run here.
 */
export async function loadRewards(specs: readonly RewardSpec[], configDir: string, options: { signal?: AbortSignal } = {}): Promise<LoadedReward[]> {
  const loaded: LoadedReward[] = [];
  let worker: RewardWorker | undefined;
  try {
    for (const spec of specs) {
      if (!isRewardFile(spec.use)) {
        loaded.push(loadBuiltin(spec));
        continue;
      }
      const path = rewardFilePath(spec, configDir);
      const name = basename(spec.use, extname(spec.use));
      const limits: CallLimits = { label: `reward ${name} (${spec.use})`, timeoutS: spec.timeout_s ?? DEFAULT_REWARD_TIMEOUT_S, signal: options.signal };
      const host = (worker ??= new RewardWorker());
      const failure = await host.load(path, limits);
      if (failure !== undefined) throw new RewardSpecError(`reward ${spec.use}: ${failure}`, 'use');
      loaded.push({
        name,
        weight: spec.weight,
        params: spec.with,
        file: spec.use,
        fn: (batch, params) => host.call(path, batch, params, limits) as Promise<RewardValue[]>,
        close: () => host.close(),
      });
    }
  } catch (error) {
    await worker?.close();
    throw error;
  }
  return loaded;
}

/** Ends the worker the reward files of `rewards` run in (a no-op for built-ins). */
export async function closeRewards(rewards: readonly LoadedReward[]): Promise<void> {
  await Promise.all(rewards.map((reward) => reward.close?.()));
}

/** A reward that returned per-step values: its weight and its unweighted values per completion, per step. */
export interface SteppedReward {
  name: string;
  weight: number;
  /** Per completion, per step; a null (not applicable) completion has 0 for every step. */
  steps: number[][];
}

export interface ScoredBatch {
  /** Σ weight × value per completion (null counts 0). */
  total: number[];
  /** Per reward name: the value per completion as a number, or null. */
  byReward: Record<string, (number | null)[]>;
  /**
   * Σ weight × value over the rewards that return no steps: the outcome reward of stepwise
   * advantages, which must not count the step rewards a second time.
   */
  outcome: number[];
  /** The rewards that returned per-step values, in config order (empty when none did). */
  stepped: SteppedReward[];
}

/**
 * A value as a reward may return it, or an error naming the reward and the example. NaN and
 * ±Infinity are refused wherever they appear (the total or any step): one would make every
 * advantage of its group NaN. JSON.stringify writes them as null, so they are named apart.
 */
function checkValue(reward: LoadedReward, value: unknown, id: string): RewardValue {
  if (value === null || (typeof value === 'number' && Number.isFinite(value))) return value;
  const fail = (what: string): never => {
    throw new Error(`reward ${reward.name} returned ${what} for example ${id}: expected a finite number, null or { total, steps } with finite numbers`);
  };
  if (typeof value === 'number') fail(String(value));
  if (typeof value === 'object' && value !== null && 'total' in value && 'steps' in value) {
    const { total, steps: perStep } = value as { total: unknown; steps: unknown };
    if (typeof total === 'number' && !Number.isFinite(total)) fail(`a non-finite total (${total})`);
    if (Array.isArray(perStep)) {
      const bad = perStep.findIndex((s) => typeof s === 'number' && !Number.isFinite(s));
      if (bad >= 0) fail(`a non-finite value (${perStep[bad]}) at steps[${bad}]`);
    }
    if (typeof total === 'number' && Array.isArray(perStep) && perStep.every((s) => typeof s === 'number')) {
      return { total, steps: perStep as number[] };
    }
  }
  return fail(JSON.stringify(value) ?? String(value));
}

async function callReward(reward: LoadedReward, batch: RewardInput[]): Promise<RewardValue[]> {
  try {
    const values = await reward.fn(batch, reward.params);
    if (!Array.isArray(values) || values.length !== batch.length) {
      throw new Error(`reward ${reward.name} returned ${Array.isArray(values) ? values.length : typeof values} values for a batch of ${batch.length}`);
    }
    return values.map((value, i) => checkValue(reward, value, batch[i]?.id ?? '?'));
  } catch (error) {
    // A timeout, a cancel or a dead worker: nothing to learn from rerunning examples one by one.
    if (error instanceof RewardWorkerStopped || (error instanceof Error && error.name === 'AbortError')) throw error;
    if (batch.length === 1) {
      const message = error instanceof Error ? error.message : String(error);
      throw new Error(message.startsWith(`reward ${reward.name}`) ? message : `reward ${reward.name} failed on example ${batch[0]?.id}: ${message}`);
    }
    // The batch failed as a whole: rerun one example at a time to name the one that breaks it.
    for (const one of batch) await callReward(reward, [one]);
    throw error;
  }
}

export async function scoreBatch(rewards: readonly LoadedReward[], batch: RewardInput[]): Promise<ScoredBatch> {
  const total = new Array<number>(batch.length).fill(0);
  const outcome = new Array<number>(batch.length).fill(0);
  const byReward: Record<string, (number | null)[]> = {};
  const stepped: SteppedReward[] = [];
  for (const reward of rewards) {
    const values = await callReward(reward, batch);
    byReward[reward.name] = values.map((v) => (v === null ? null : typeof v === 'number' ? v : v.total));
    values.forEach((value, i) => {
      if (value === null) return;
      const scalar = typeof value === 'number' ? value : value.total;
      total[i] = (total[i] as number) + reward.weight * scalar;
    });
    const withSteps = values.filter((v): v is { total: number; steps: number[] } => typeof v === 'object' && v !== null);
    if (withSteps.length === 0) {
      values.forEach((value, i) => {
        if (typeof value === 'number') outcome[i] = (outcome[i] as number) + reward.weight * value;
      });
      continue;
    }
    const stepCount = (withSteps[0] as { steps: number[] }).steps.length;
    const steps = values.map((value, i) => {
      if (typeof value === 'number') throw new Error(`reward ${reward.name} returned a plain number for example ${batch[i]?.id} but per-step values for others`);
      if (value === null) return new Array<number>(stepCount).fill(0);
      if (value.steps.length !== stepCount) throw new Error(`reward ${reward.name} returned ${value.steps.length} steps for example ${batch[i]?.id}, others ${stepCount}`);
      return [...value.steps];
    });
    stepped.push({ name: reward.name, weight: reward.weight, steps });
  }
  return { total, byReward, outcome, stepped };
}

/** Mean of the non-null values, or null when every value is null. */
export function rewardMean(values: readonly (number | null)[]): number | null {
  const present = values.filter((v): v is number => v !== null);
  return present.length === 0 ? null : present.reduce((a, b) => a + b, 0) / present.length;
}
