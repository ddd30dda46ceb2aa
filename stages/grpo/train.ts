/**
 * The grpo stage's run (the recipe is described in index.ts): the loop over steps, each step the
 * pipeline rollout → judge once → filter and refill (step.ts) → advantages → update (update.ts).
 * Loaded lazily: it imports tfjs.
 */
import type { StageContext, StageOutcome } from '../../pipeline/api.ts';
import * as engineLib from '#engine';
import { fitsContext, loadPolicy, promptIds } from '../lib/judge/model.ts';
import { loadKnowledgeGraph } from '../lib/relevance/kg.ts';
import type { PromptRecord } from '../lib/relevance/prompts.ts';
import { mean } from '../lib/relevance/grade-agreement.ts';
import { std } from '../lib/relevance/grade-agreement.ts';
import { closeRewards, loadRewards, rewardMean, type LoadedReward } from '../lib/rl/rewards.ts';
import { greedyAccuracy, probeSample } from '../lib/judge/accuracy-probe.ts';
import { readPromptRecords } from '../lib/artifacts/prompts.ts';
import { referenceSteps } from '../lib/relevance/prompts.ts';
import { finishTraining, runTrainingLoop, trainableModel } from '../lib/judge/training.ts';
import type { GrpoParams } from './params.ts';
import { tieredPromptSource, type CurriculumTier, type Group, type Rollout, type RolloutKind, type Sampler } from './rollout.ts';
import { collectGroups, rollOutGroups, tokenAdvantages, type CollectedGroups } from './step.ts';
import { tokenStepIndices } from './token-steps.ts';
import { replayWeights, updatePolicy } from './update.ts';

/** What a resumed run restores, so its manifest equals an uninterrupted run's. */
interface LoopState {
  totals: Record<string, number>;
  rewardCurve: number[];
}

const newTotals = () => ({ generated_groups: 0, kept_groups: 0, dropped_groups: 0, generation_rounds: 0, replayed_groups: 0, replay_skipped_too_long: 0, skipped_updates: 0 });

/**
 * Optimizer steps of a run: max_steps, or with epochs set, enough steps of prompts_per_step prompts
 * to pass over the usable prompts that many times (rounded up). Example: a 163-prompt RL pool, 8
 * prompts a step, epochs 1: ceil(163 / 8) = 21 steps.
 */
export function grpoSteps(p: Pick<GrpoParams, 'max_steps' | 'epochs' | 'prompts_per_step'>, prompts: number): number {
  return p.epochs === undefined ? p.max_steps : Math.max(1, Math.ceil((p.epochs * prompts) / p.prompts_per_step));
}

/** The curriculum's tiers over the usable prompts (one tier of all of them without a curriculum). */
function curriculumTiers(prompts: readonly PromptRecord[], p: GrpoParams, steps: number): CurriculumTier[] {
  if (p.curriculum.length === 0) return [{ prompts, steps }];
  return p.curriculum.map((tier, t) => {
    const chosen = prompts.filter((r) => tier.difficulty.includes(r.example.meta.difficulty));
    if (chosen.length === 0) throw new Error(`curriculum tier ${t} (difficulty ${tier.difficulty.join(', ')}) has no usable train prompt`);
    return { prompts: chosen, steps: tier.steps };
  });
}

/** The step's curves, on-policy and hinted rollouts apart (they come from different distributions). */
function rolloutMetrics(collected: CollectedGroups, rewardNames: readonly string[]): Record<string, number | null> {
  const all = collected.generated.flatMap((g) => g.rollouts);
  const of = (kinds: RolloutKind[]) => all.filter((r) => kinds.includes(r.kind));
  const accuracy = (rs: Rollout[]) => (rs.length === 0 ? null : mean(rs.map((r) => (r.correct ? 1 : 0))));
  const onPolicy = of(['policy', 'no-context']);
  const hinted = of(['hinted']);
  // Mean -log p of the sampled tokens: an unbiased estimate of the policy's entropy when sampling
  // at temperature 1 without top-k/top-p (the engine returns no full distributions).
  const entropy = (rs: Rollout[]) => (rs.length === 0 ? null : -mean(rs.flatMap((r) => r.completion.logprobs)));
  const values: Record<string, number | null> = {
    reward: mean(onPolicy.map((r) => r.reward.total)),
    reward_std: std(onPolicy.map((r) => r.reward.total)),
    accuracy: accuracy(onPolicy),
    entropy: entropy(onPolicy),
    completion_length: mean(onPolicy.map((r) => r.completion.tokens.length)),
    hinted_reward: hinted.length === 0 ? null : mean(hinted.map((r) => r.reward.total)),
    hinted_accuracy: accuracy(hinted),
    hinted_entropy: entropy(hinted),
    generation_rounds: collected.rounds,
    generated_groups: collected.generated.length,
    kept_groups: collected.kept.length,
    kept_fraction: collected.generated.length === 0 ? 0 : collected.passed / collected.generated.length,
    replayed_groups: collected.replayed,
  };
  if (all.some((r) => r.kind === 'no-context')) {
    values.accuracy_with_context = accuracy(of(['policy']));
    values.accuracy_without_context = accuracy(of(['no-context']));
  }
  for (const name of rewardNames) values[`reward/${name}`] = rewardMean(onPolicy.map((r) => r.reward.byReward[name] ?? null));
  return values;
}

export async function trainGrpo(ctx: StageContext<GrpoParams>): Promise<StageOutcome> {
  // Reward files run in a worker (stages/lib/rl/reward-files.ts), ended however the run ends.
  const rewards = await loadRewards(ctx.params.rewards, ctx.configDir, { signal: ctx.signal });
  try {
    return await trainWithRewards(ctx, rewards);
  } finally {
    await closeRewards(rewards);
  }
}

async function trainWithRewards(ctx: StageContext<GrpoParams>, rewards: LoadedReward[]): Promise<StageOutcome> {
  const p = ctx.params;
  const { policy, engine } = await loadPolicy(ctx.inputs.one('checkpoint').dir, ctx.engine, ctx.log);
  const { model, tokenizer } = policy;
  const kg = await loadKnowledgeGraph(ctx.inputs.one('kg').dir);
  const promptsDir = ctx.inputs.one('prompts').dir;
  const decode = (ids: number[]) => tokenizer.decode(ids, { skipSpecialTokens: true });

  const { readRlPool } = await import('../lib/artifacts/checkpoint.ts');
  const { restrictToRlPool } = await import('../lib/rl/pool.ts');
  // The RL pool the SFT checkpoint held out, when it has one; else every train prompt.
  const all = await restrictToRlPool(ctx.inputs.one('checkpoint').dir, await readPromptRecords(promptsDir, 'train'));
  const train = all.filter((r) => fitsContext(policy, promptIds(tokenizer, policy.format, r.messages).length, p.max_completion_length));
  const skippedTooLong = all.length - train.length;
  if (skippedTooLong > 0) ctx.log.warn(`skipped ${skippedTooLong} of ${all.length} train prompts too long for the context with ${p.max_completion_length} new tokens`);
  if (train.length < p.prompts_per_step) throw new Error(`prompts_per_step ${p.prompts_per_step} exceeds the ${train.length} usable train prompts`);
  const steps = grpoSteps(p, train.length);
  if (p.epochs !== undefined) ctx.log.info(`${steps} steps: ${p.epochs} epochs over ${train.length} prompts, ${p.prompts_per_step} a step`);
  // SFT's grade balance, carried in the RL pool file: GRPO draws its prompts the way sample and dpo do.
  const balance = (await readRlPool(ctx.inputs.one('checkpoint').dir))?.balance;
  if (balance) ctx.log.info(`grade balance: prompts drawn weighted by gold grade (temper ${balance.temper}, cap ${balance.cap}), as the RL pool's`);
  const source = tieredPromptSource(curriculumTiers(train, p, steps), p.prompts_per_step, ctx.rng, balance);
  const sampler: Sampler = {
    policy,
    references: referenceSteps(train, kg),
    rewards,
    sampling: { n: p.num_generations, batchSize: p.generation_batch_size, maxNewTokens: p.max_completion_length, temperature: p.temperature, topK: p.top_k, topP: p.top_p, signal: ctx.signal },
  };

  const probeRecords = p.eval_prompts > 0 ? probeSample(await readPromptRecords(promptsDir, 'dev'), p.eval_prompts, ctx.seed) : [];
  const probe = () => greedyAccuracy(policy, probeRecords, { maxNewTokens: p.max_new_tokens ?? p.max_completion_length, batchSize: p.generation_batch_size, rng: ctx.rng.fork('probe'), signal: ctx.signal });
  const before = await probe();
  ctx.log.info(`dev probe before: ${JSON.stringify(before)}`);

  const trainable = await trainableModel(ctx, model, p.lora);
  // The reference is the input checkpoint, needed only when the KL term is on: with LoRA the frozen
  // base under the adapters, else the checkpoint loaded a second time.
  const reference = p.beta > 0 ? (p.lora ? engineLib.withoutAdapters(model) : engineLib.loadModel(ctx.inputs.one('checkpoint').dir)) : undefined;
  const optimizer = new engineLib.AdamW(trainable, engineLib.adamWOptionsSchema.parse({ weight_decay: p.weight_decay }));
  let totals: Record<string, number> = newTotals();
  let rewardCurve: number[] = [];
  const step = await runTrainingLoop<CollectedGroups, LoopState>(ctx, {
    model,
    optimizer,
    settings: p,
    totalSteps: steps,
    // The data: this step's groups, rolled out by the current policy (seeded by the step).
    batch(step) {
      const stepRng = ctx.rng.fork(`step-${step}`);
      return collectGroups((records, round) => rollOutGroups(sampler, p, records, stepRng.fork(`round-${round}`)), source, step, p);
    },
    async trainStep(collected, { step, lr }) {
      const values = rolloutMetrics(collected, rewards.map((r) => r.name));
      totals.generated_groups! += collected.generated.length;
      totals.kept_groups! += collected.kept.length;
      totals.dropped_groups! += collected.generated.length - collected.passed;
      totals.generation_rounds! += collected.rounds;
      totals.replayed_groups! += collected.replayed;
      totals.replay_skipped_too_long! += collected.replayTooLong;
      rewardCurve.push(values.reward as number);
      if (collected.kept.length === 0) {
        totals.skipped_updates!++;
        ctx.log.info(`step ${step + 1}: no group passed the filters in ${collected.rounds} rounds; no update`);
      } else {
        Object.assign(values, await updateStep(collected.kept, lr));
        // The next rollouts sample the updated policy: re-export it to the inference session (onnxruntime).
        values.inference_refresh_s = await policy.inference.refresh();
      }
      return values;
    },
    state: {
      save: () => ({ totals, rewardCurve }),
      restore(saved) {
        totals = { ...newTotals(), ...saved.totals };
        rewardCurve = [...saved.rewardCurve];
      },
    },
    async begin(step) {
      if (step > 0) await policy.inference.refresh(); // rollouts must see the resumed weights
    },
  });

  const probed = await finishTraining(ctx, policy, optimizer, step, before, probe);
  if (reference) (p.lora ? engineLib.releaseFrozenWeights(reference) : engineLib.disposeModel(reference));
  const third = Math.max(1, Math.floor(rewardCurve.length / 3));
  return {
    engine,
    metrics: {
      steps: step,
      ...totals,
      grade_balance: balance ? 1 : 0,
      kept_fraction: totals.generated_groups === 0 ? 0 : (totals.generated_groups! - totals.dropped_groups!) / totals.generated_groups!,
      skipped_too_long: skippedTooLong,
      reward_first_third: mean(rewardCurve.slice(0, third)),
      reward_last_third: mean(rewardCurve.slice(-third)),
      ...probed,
    },
  };

  /** Advantages of the kept groups, replay weights, then the update; returns the update's metrics. */
  async function updateStep(kept: Group[], lr: number): Promise<Record<string, number>> {
    const rollouts = kept.flatMap((g) => g.rollouts);
    const { advantages, betas } = tokenAdvantages(kept, p, (r) => tokenStepIndices(r.completion.tokens, decode));
    const weights = await replayWeights(model, rollouts, p);
    const weighted = advantages.map((row, i) => row.map((a, t) => a * (weights[i]?.[t] as number)));
    const hinted = weights.filter((_, i) => rollouts[i]?.kind === 'hinted').flat();
    return {
      ...(await updatePolicy({ model, reference, optimizer, lora: p.lora !== null }, rollouts, weighted, p, lr)),
      ...(hinted.length > 0 ? { replay_weight: mean(hinted) } : {}),
      ...(betas.length > 0 ? { dyknow_beta: mean(betas) } : {}),
    };
  }
}
