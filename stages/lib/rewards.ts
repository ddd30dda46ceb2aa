/**
 * Rewards for GRPO: a registry of built-ins and the loader for user reward files.
 *
 * A reward is a plain function, as in TRL: it gets the batch and returns one value per completion,
 * a number, `null` (not applicable: left out of that reward's mean, contributes 0 to the total), or
 * `{ total, steps }` where `steps` holds one reward per reasoning step for stepwise advantages.
 * It may be async. Each reward is logged under its own name; the total is Σ weight × value.
 *
 * ```ts
 * // my-reward.ts, used as `rewards: [{ use: ./my-reward.ts, weight: 0.5, with: { target: 'L4' } }]`
 * import type { RewardFunction } from 'lore-pipeline/stages/lib/rewards.ts';
 * const reward: RewardFunction<{ target: string }> = (batch, params) =>
 *   batch.map((x) => (x.parsed.label === undefined ? null : x.parsed.label === params.target ? 1 : 0));
 * export default reward;
 * ```
 */
import { existsSync } from 'node:fs';
import { basename, extname, isAbsolute, resolve } from 'node:path';
import { STEP_NAMES, verifyCompletion, type ParsedCompletion, type ReasoningSteps } from './completion.ts';
import { GRADES, type ExampleMeta, type Grade } from './relevance/types.ts';
import { describeLoadError, importUserModule } from '../../pipeline/user-module.ts';
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
 * Rule-shaped stepwise reward (TaoSR-AGRL): behind a format gate (a malformed completion earns
 * nothing), each reasoning step that verifies against the reference earns its share. The rules step
 * weighs `rule_weight` times a plain step when the example has firing rules, because getting the
 * business rule right is what the rule-aware shaping rewards. `steps` carries the per-step rewards
 * for `advantage: stepwise`.
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
}

export interface LoadedReward {
  /** Logged under this name: the built-in's name or the file's base name. */
  name: string;
  weight: number;
  params: Record<string, unknown>;
  fn: RewardFunction<Record<string, unknown>>;
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

export async function loadRewards(specs: readonly RewardSpec[], configDir: string): Promise<LoadedReward[]> {
  const loaded: LoadedReward[] = [];
  for (const spec of specs) {
    if (!isRewardFile(spec.use)) {
      const builtin = builtinRewards[spec.use];
      if (!builtin) {
        throw new RewardSpecError(
          `unknown reward "${spec.use}": built-ins are ${Object.keys(builtinRewards).join(', ')}; a file path starts with ./`,
          'use',
        );
      }
      const params = builtin.params.safeParse(spec.with);
      if (!params.success) {
        const problems = params.error.issues.map((i) => `${i.path.join('.') || '(with)'}: ${i.message}`).join('; ');
        throw new RewardSpecError(`reward ${spec.use}: bad params: ${problems}`, 'with');
      }
      loaded.push({ name: spec.use, weight: spec.weight, params: params.data, fn: builtin.fn as LoadedReward['fn'] });
      continue;
    }
    const path = resolve(configDir, spec.use);
    if (!existsSync(path)) throw new RewardSpecError(`reward file not found: ${spec.use} (looked for ${path})`, 'use');
    let module: Record<string, unknown>;
    try {
      module = await importUserModule(path);
    } catch (error) {
      throw new RewardSpecError(`reward ${spec.use}: cannot load ${path}: ${describeLoadError(error)}`, 'use');
    }
    if (typeof module.default !== 'function') {
      throw new RewardSpecError(`reward ${spec.use}: the module's default export must be a function (batch, params) => values`, 'use');
    }
    loaded.push({
      name: basename(spec.use, extname(spec.use)),
      weight: spec.weight,
      params: spec.with,
      fn: module.default as LoadedReward['fn'],
    });
  }
  return loaded;
}

export interface ScoredBatch {
  /** Σ weight × value per completion (null counts 0). */
  total: number[];
  /** Per reward name: the value per completion as a number, or null. */
  byReward: Record<string, (number | null)[]>;
  /** Per completion, per step: Σ weight × step reward over the rewards that return steps. */
  steps: number[][] | undefined;
}

function checkValue(reward: LoadedReward, value: unknown, id: string): RewardValue {
  if (value === null || (typeof value === 'number' && Number.isFinite(value))) return value;
  if (typeof value === 'object' && value !== null && 'total' in value && 'steps' in value) {
    const { total, steps: perStep } = value as { total: unknown; steps: unknown };
    if (typeof total === 'number' && Number.isFinite(total) && Array.isArray(perStep) && perStep.every((s) => typeof s === 'number')) {
      return { total, steps: perStep as number[] };
    }
  }
  throw new Error(`reward ${reward.name} returned ${JSON.stringify(value)} for example ${id}: expected a finite number, null or { total, steps }`);
}

async function callReward(reward: LoadedReward, batch: RewardInput[]): Promise<RewardValue[]> {
  try {
    const values = await reward.fn(batch, reward.params);
    if (!Array.isArray(values) || values.length !== batch.length) {
      throw new Error(`reward ${reward.name} returned ${Array.isArray(values) ? values.length : typeof values} values for a batch of ${batch.length}`);
    }
    return values.map((value, i) => checkValue(reward, value, batch[i]?.id ?? '?'));
  } catch (error) {
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
  const byReward: Record<string, (number | null)[]> = {};
  let stepSums: number[][] | undefined;
  for (const reward of rewards) {
    const values = await callReward(reward, batch);
    byReward[reward.name] = values.map((v) => (v === null ? null : typeof v === 'number' ? v : v.total));
    values.forEach((value, i) => {
      if (value === null) return;
      const scalar = typeof value === 'number' ? value : value.total;
      total[i] = (total[i] as number) + reward.weight * scalar;
      if (typeof value === 'object') {
        stepSums ??= batch.map(() => new Array<number>(value.steps.length).fill(0));
        const row = stepSums[i] as number[];
        if (row.length !== value.steps.length) {
          throw new Error(`reward ${reward.name} returned ${value.steps.length} steps for example ${batch[i]?.id}, others ${row.length}`);
        }
        value.steps.forEach((s, k) => (row[k] = (row[k] as number) + reward.weight * s));
      }
    });
  }
  return { total, byReward, steps: stepSums };
}

/** Mean of the non-null values, or null when every value is null. */
export function rewardMean(values: readonly (number | null)[]): number | null {
  const present = values.filter((v): v is number => v !== null);
  return present.length === 0 ? null : present.reduce((a, b) => a + b, 0) / present.length;
}
