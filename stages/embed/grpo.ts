/**
 * LREM stage 2 for the embed stage (reason mode): GRPO on the reasoning with a retrieval reward.
 * LREM refines the analysis a model writes before its embedding is read with reinforcement
 * learning whose reward is retrieval itself; GRPO (Shao et al. 2024, DeepSeekMath) is the project's
 * RL machinery (stages/lib/rl), reused here:
 *
 *   1. for each of a step's train queries q, G analyses o_1..o_G ~ π_θ(· | q <think>) (sampled at
 *      `temperature`, cut at the end of the query step as in stage 1's embedding);
 *   2. each is embedded (the query, then o_i: stages/lib/retrieval/embedding.ts) and rewarded by
 *      how well that vector retrieves q's judged-relevant items from the whole catalog: the
 *      reciprocal rank of the best relevant item, or hit@K (stages/lib/retrieval/reward.ts);
 *   3. outcome-supervised group advantages Â_i = (r_i − mean(r)) / std(r) (DeepSeekMath §4.1.2,
 *      stages/lib/rl/advantages.ts), every token of o_i getting Â_i;
 *   4. one update of the clipped surrogate, DeepSeekMath eq. 3 with β = 0 (no reference model;
 *      TRL's default) and one iteration per batch, so the ratio π_θ/π_θold is 1 and its gradient
 *      is the policy gradient −Â ∇ log π_θ (stages/lib/rl/losses.ts: grpoLoss, loss_type grpo).
 *
 * Only the analysis tokens are trained; the items' vectors move with the shared decoder, so the
 * catalog the reward searches is re-embedded every `refreshEvery` steps. A group whose rewards are
 * all equal has no advantage and is left out of the update (counted).
 */
import { type Rng, type StageContext, yieldToEventLoop } from '../../pipeline/api.ts';
import type { Policy } from '../lib/judge/model.ts';
import type { VectorMatrix } from '../lib/retrieval/ann.ts';
import type { RetrievalRewardKind } from '../lib/retrieval/reward.ts';
import { ANALYSIS_STOPS, analysisPrompt, type Triplet } from './train.ts';

export interface GrpoOptions {
  steps: number;
  /** Queries per step. */
  queries: number;
  /** Analyses sampled per query (G). */
  groupSize: number;
  temperature: number;
  learningRate: number;
  analysisTokens: number;
  maxTokens: number;
  reward: { kind: RetrievalRewardKind; k: number };
  refreshEvery: number;
  /** Embeds the whole catalog with the model as it is now (row i = catalog item i). */
  embedCatalog: () => Promise<VectorMatrix>;
}

export interface GrpoSummary {
  steps: number;
  /** Mean reward of the sampled analyses over the first and the last quarter of the steps. */
  firstReward: number;
  lastReward: number;
  /** Groups left out of an update because every analysis in them scored the same. */
  flatGroups: number;
  groups: number;
}

/** Trains `policy.model` in place on triplets whose `positives` are catalog rows (`positiveRows`). */
export async function grpoOnReasoning(
  ctx: StageContext<unknown>,
  policy: Policy,
  triplets: readonly Triplet[],
  positiveRows: readonly (readonly number[])[],
  options: GrpoOptions,
  rng: Rng,
): Promise<GrpoSummary> {
  const tf = await import('@tensorflow/tfjs-core');
  const engineLib = await import('#engine');
  const { trainableModel } = await import('../lib/judge/training.ts');
  const { groupAdvantages } = await import('../lib/rl/advantages.ts');
  const { grpoLoss } = await import('../lib/rl/losses.ts');
  const { embedIds } = await import('../lib/retrieval/embedding.ts');
  const { retrievalReward } = await import('../lib/retrieval/reward.ts');
  const { mean } = await import('../lib/relevance/grade-agreement.ts');
  const { model, tokenizer } = policy;
  const optimizer = new engineLib.AdamW(await trainableModel(ctx, model, null), engineLib.adamWOptionsSchema.parse({}));
  const G = options.groupSize;
  let catalog = await options.embedCatalog();
  let order: number[] = [];
  const stepRewards: number[] = [];
  let flatGroups = 0;
  let groups = 0;
  for (let step = 0; step < options.steps; step++) {
    ctx.signal.throwIfAborted();
    if (step > 0 && step % options.refreshEvery === 0) catalog = await options.embedCatalog();
    if (order.length < options.queries) order = [...order, ...rng.shuffle(triplets.map((_, i) => i))];
    const picked = order.splice(0, options.queries);
    const prompts = picked.map((i) => tokenizer.encode(analysisPrompt((triplets[i] as Triplet).query)));
    const generations = await policy.inference.generate(
      prompts.flatMap((prompt) => Array.from({ length: G }, () => prompt)),
      {
        maxNewTokens: options.analysisTokens,
        eosTokenIds: [tokenizer.eosTokenId],
        stop: { strings: ANALYSIS_STOPS, decode: (ids) => tokenizer.decode(ids) },
        temperature: options.temperature,
        topK: 0,
        topP: 1,
        rng: rng.fork(`sample/${step}`),
        signal: ctx.signal,
      },
    );
    const rows = generations.map((g, r) => ({ prompt: prompts[Math.floor(r / G)] as number[], completion: g.tokens }));
    const vectors = await embedIds(model, tokenizer.padTokenId, rows.map((row) => [...row.prompt, ...row.completion]), { batchSize: rows.length, maxTokens: options.maxTokens, signal: ctx.signal });
    const d = vectors.dimensions;
    const rewards = rows.map((_, r) => retrievalReward(vectors.data.subarray(r * d, (r + 1) * d), catalog, positiveRows[picked[Math.floor(r / G)] as number] as number[], options.reward));
    const advantages = groupAdvantages(rewards, G, 'group');
    stepRewards.push(mean(rewards));
    // Rows of a group with no spread, and empty analyses, carry no gradient.
    const trained = rows
      .map((row, r) => ({ row, advantage: advantages[r] as number, group: Math.floor(r / G) }))
      .filter((x) => x.row.completion.length > 0 && Math.abs(x.advantage) > 0);
    const flat = picked.length - new Set(trained.map((x) => x.group)).size;
    flatGroups += flat;
    groups += picked.length;
    let loss = 0;
    if (trained.length > 0) {
      const result = await engineLib.trainStep(
        model,
        optimizer,
        [trained],
        (batch) => {
          const { logprobs, mask } = engineLib.sequenceLogprobs(model, batch.map((x) => x.row), { temperature: options.temperature });
          const width = logprobs.shape[1];
          const adv = tf.tensor2d(batch.map((x) => new Array<number>(width).fill(x.advantage)));
          const out = grpoLoss(logprobs, engineLib.stopGradient(logprobs), undefined, adv, mask, { type: 'grpo', epsilon: 0.2, epsilonHigh: 0.2, beta: 0, maxCompletionLength: options.analysisTokens });
          tf.dispose([out.meanKl, out.clipFraction]);
          return { loss: out.loss, weight: 1 };
        },
        { lr: options.learningRate, maxGradNorm: 1, signal: ctx.signal },
      );
      loss = result.loss;
      await policy.inference.refresh();
    }
    ctx.metrics.log(step + 1, { grpo_reward: mean(rewards), grpo_loss: loss, grpo_flat_groups: flat, grpo_mean_analysis_tokens: mean(rows.map((r) => r.completion.length)) });
    ctx.progress.update(step + 1, options.steps, 'GRPO steps');
    await yieldToEventLoop();
  }
  optimizer.dispose();
  const quarter = Math.max(1, Math.floor(stepRewards.length / 4));
  return { steps: options.steps, firstReward: mean(stepRewards.slice(0, quarter)), lastReward: mean(stepRewards.slice(-quarter)), flatGroups, groups };
}
