/**
 * A GRPO step's pipeline up to the update, as named functions the variants plug into:
 *   collectGroups: rollout (plain + guided replay, or DyKnow's two groups) → judge and score once
 *                  → filter (dynamic sampling, SRPO diversity) → refill until the batch is full
 *   tokenAdvantages: per-token advantages of the kept groups (outcome, stepwise or DyKnow)
 * The update itself is update.ts.
 */
import type { Rng } from '../../pipeline/api.ts';
import { fitsContext, promptIds } from '../lib/judge/model.ts';
import type { PromptRecord } from '../lib/relevance/prompts.ts';
import { mean } from '../lib/relevance/grade-agreement.ts';
import { diverseGroups, dyknowAdvantages, groupAdvantages, informativeGroups, stepwiseAdvantages } from '../lib/rl/advantages.ts';
import type { GrpoParams } from './params.ts';
import { groupsToReplay, hintedMessages, reasoningText, rollOut, scoreRollouts, withoutContext, type Group, type PromptSource, type Rollout, type Sampler } from './rollout.ts';

export interface CollectedGroups {
  /** At most prompts_per_step groups that passed the filters, in the order generated. */
  kept: Group[];
  /** Every group generated this step (for the reward and accuracy curves). */
  generated: Group[];
  rounds: number;
  /** Groups that passed the filters, before trimming to the batch. */
  passed: number;
  replayed: number;
  /** Weak groups whose hinted prompt did not fit the context: not replayed. */
  replayTooLong: number;
}

/** One generation round's groups, and how many were replayed or could not be (hinted prompt too long). */
export interface RoundGroups {
  groups: Group[];
  replayed: number;
  replayTooLong: number;
}

/** Rolls out and scores one round of prompts (`rollOutGroups` bound to a sampler and its params). */
export type RollRound = (records: PromptRecord[], round: number) => Promise<RoundGroups>;

/** The prompts rolled out and scored: one group of G each, or 2G under DyKnow. */
export async function rollOutGroups(sampler: Sampler, p: GrpoParams, records: PromptRecord[], rng: Rng): Promise<RoundGroups> {
  const G = p.num_generations;
  if (p.rollout === 'dyknow') {
    const requests = records.flatMap((record) => [
      { record, messages: withoutContext(record), kind: 'no-context' as const },
      { record, messages: record.messages, kind: 'policy' as const },
    ]);
    const rollouts = await rollOut(sampler, requests, rng);
    await scoreRollouts(sampler, rollouts);
    return { groups: records.map((record, g) => ({ record, rollouts: rollouts.slice(2 * g * G, 2 * (g + 1) * G) })), replayed: 0, replayTooLong: 0 };
  }
  const rollouts = await rollOut(sampler, records.map((record) => ({ record, messages: record.messages, kind: 'policy' as const })), rng);
  const groups = records.map((record, g) => ({ record, rollouts: rollouts.slice(g * G, (g + 1) * G) }));

  // Guided replay (TaoSR-AGRL, "Adaptive Guided Replay"): the second half of a weak group is rolled
  // again with the hint, where the hinted prompt still leaves room for a completion.
  const accuracy = groups.map((group) => mean(group.rollouts.map((r) => (r.correct ? 1 : 0))));
  const weak = groupsToReplay(accuracy, p.replay_threshold, p.replay_share);
  const { policy } = sampler;
  const fits = (g: number) => fitsContext(policy, promptIds(policy.tokenizer, policy.format, hintedMessages((groups[g] as Group).record)).length, p.max_completion_length);
  const replay = weak.filter(fits);
  if (replay.length > 0) {
    const half = Math.ceil(G / 2);
    const hinted = await rollOut(sampler, replay.map((g) => ({ record: (groups[g] as Group).record, messages: hintedMessages((groups[g] as Group).record), kind: 'hinted' as const })), rng);
    replay.forEach((g, j) => (groups[g] as Group).rollouts.splice(G - half, half, ...hinted.slice(j * half, (j + 1) * half)));
  }
  await scoreRollouts(sampler, groups.flatMap((g) => g.rollouts));
  return { groups, replayed: replay.length, replayTooLong: weak.length - replay.length };
}

/** Indices of the groups that pass dynamic sampling and SRPO's diversity filter. */
export function passingGroups(groups: readonly Group[], p: Pick<GrpoParams, 'dynamic_sampling' | 'min_distinct_reasoning'>): number[] {
  const size = groups[0]?.rollouts.length ?? 0;
  if (size === 0) return [];
  const all = groups.flatMap((g) => g.rollouts);
  let keep = groups.map((_, g) => g);
  if (p.dynamic_sampling) {
    const informative = new Set(informativeGroups(all.map((r) => r.correct), size));
    keep = keep.filter((g) => informative.has(g));
  }
  if (p.min_distinct_reasoning > 1) {
    const diverse = new Set(diverseGroups(all.map(reasoningText), size, p.min_distinct_reasoning));
    keep = keep.filter((g) => diverse.has(g));
  }
  return keep;
}

/**
 * Rolls out prompts until `prompts_per_step` groups pass the filters or `max_generation_rounds`
 * rounds were generated (verl's dynamic-sampling refill, `max_num_gen_batches`): each round draws a
 * whole batch of new prompts from `source`. A short batch after the last round is trained as it is.
 */
export async function collectGroups(rollRound: RollRound, source: PromptSource, step: number, p: Pick<GrpoParams, 'prompts_per_step' | 'max_generation_rounds' | 'dynamic_sampling' | 'min_distinct_reasoning'>): Promise<CollectedGroups> {
  const collected: CollectedGroups = { kept: [], generated: [], rounds: 0, passed: 0, replayed: 0, replayTooLong: 0 };
  const used = new Set<string>();
  while (collected.rounds < p.max_generation_rounds && collected.kept.length < p.prompts_per_step) {
    const records = source(step, collected.rounds, p.prompts_per_step, used);
    if (records.length === 0) break;
    records.forEach((r) => used.add(r.id));
    const round = await rollRound(records, collected.rounds);
    collected.rounds++;
    collected.replayed += round.replayed;
    collected.replayTooLong += round.replayTooLong;
    collected.generated.push(...round.groups);
    const passing = passingGroups(round.groups, p).map((g) => round.groups[g] as Group);
    collected.passed += passing.length;
    collected.kept.push(...passing.slice(0, p.prompts_per_step - collected.kept.length));
  }
  return collected;
}

/**
 * Per-token advantages of every rollout of `groups` (groups whole, in order), as nested arrays
 * (rollout, completion token). `stepOf(rollout)` gives each token's reasoning step index (K outside
 * every step) for stepwise advantages. Also returns DyKnow's per-prompt β when it applies.
 */
export function tokenAdvantages(groups: readonly Group[], p: GrpoParams, stepOf: (rollout: Rollout) => number[]): { advantages: number[][]; betas: number[] } {
  const rollouts = groups.flatMap((g) => g.rollouts);
  const size = groups[0]?.rollouts.length ?? 0;
  const perToken = (values: readonly number[]) => rollouts.map((r, i) => r.completion.tokens.map(() => values[i] as number));
  if (p.rollout === 'dyknow') {
    const { advantages, betas } = dyknowAdvantages(
      rollouts.map((r) => r.reward.total),
      rollouts.map((r) => r.correct),
      p.num_generations,
      { alpha: p.dyknow.alpha, clamp: p.dyknow.clamp },
    );
    return { advantages: perToken(advantages), betas };
  }
  if (p.advantage === 'stepwise') {
    const stepped = rollouts[0]?.reward.stepped ?? [];
    if (stepped.length === 0) throw new Error('advantage: stepwise needs a reward that returns per-step values (e.g. steps)');
    const perStep = stepwiseAdvantages(
      rollouts.map((r) => r.reward.outcome),
      stepped.map((_, f) => ({ weight: stepped[f]?.weight as number, steps: rollouts.map((r) => r.reward.stepped[f]?.steps as number[]) })),
      size,
      p.scale_rewards,
    );
    return { advantages: rollouts.map((r, i) => stepOf(r).map((k) => (perStep[i] as number[])[k] as number)), betas: [] };
  }
  return { advantages: perToken(groupAdvantages(rollouts.map((r) => r.reward.total), size, p.scale_rewards)), betas: [] };
}
