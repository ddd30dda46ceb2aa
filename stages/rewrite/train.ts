/**
 * BEQUE's rewriter training (Peng et al. 2024, "Large Language Model based Long-tail Query
 * Rewriting in Taobao Search"), on the project's decoder:
 * 1. SFT on the rewrites rejection sampling kept (§3.2: a candidate is kept when it retrieves more
 *    relevant items than the query): next-token loss on "rewrite: <query>\n" → "<rewrite>\n".
 * 2. Partial-order alignment (§3.3): the candidates of a query ranked by their offline feedback
 *    (relevant items, items gained, judged relevance of the set: stages/lib/retrieval/rewrite.ts),
 *    and for every strictly better–worse pair (y_i ≻ y_j) the DPO-style term
 *      −log σ(β[(log π(y_i|x) − log π_ref(y_i|x)) − (log π(y_j|x) − log π_ref(y_j|x))])
 *    which BEQUE's partial-order objective sums over all ordered pairs of a query's rewrites; the
 *    reference π_ref is the SFT model, its log-probs computed once before the first update (as the
 *    dpo stage does, TRL's precompute_ref_log_probs). The loss is stages/lib/rl/losses.ts' dpoLoss.
 * 3. Rewrites generated greedily by the trained model for every query.
 */
import type { Scalar, Tensor1D } from '@tensorflow/tfjs-core';
import { type Rng, type StageContext, yieldToEventLoop } from '../../pipeline/api.ts';
import type { Policy } from '../lib/judge/model.ts';
import { REWRITE_STOPS, rewritePrompt } from '../lib/retrieval/rewrite.ts';

export interface RewriterTraining {
  sftSteps: number;
  dpoSteps: number;
  batchSize: number;
  learningRate: number;
  beta: number;
}

interface Row {
  prompt: number[];
  completion: number[];
}

/** Batches drawn round-robin over a seeded shuffle (every example once before any repeats). */
function batcher<T>(examples: readonly T[], batchSize: number, rng: Rng): () => T[] {
  let order: number[] = [];
  return () => {
    if (order.length < batchSize) order = [...order, ...rng.shuffle(examples.map((_, i) => i))];
    return order.splice(0, Math.min(batchSize, examples.length)).map((i) => examples[i] as T);
  };
}

/**
 * Trains `policy.model` in place: SFT on `kept`, then partial-order DPO on `pairs`; a phase with no
 * examples or no steps is skipped (the returned figures say which ran). Logs each step's loss.
 */
export async function trainRewriter(
  ctx: StageContext<unknown>,
  policy: Policy,
  kept: readonly { query: string; rewrite: string }[],
  pairs: readonly { query: string; chosen: string; rejected: string }[],
  options: RewriterTraining,
  rng: Rng,
): Promise<Record<string, number>> {
  const tf = await import('@tensorflow/tfjs-core');
  const engineLib = await import('#engine');
  const { dpoLoss } = await import('../lib/rl/losses.ts');
  const { trainableModel } = await import('../lib/judge/training.ts');
  const { model, tokenizer } = policy;
  const encode = (query: string, rewrite: string): Row => ({ prompt: tokenizer.encode(rewritePrompt(query)), completion: [...tokenizer.encode(`${rewrite}${REWRITE_STOPS[0]}`), tokenizer.eosTokenId] });
  const optimizer = new engineLib.AdamW(await trainableModel(ctx, model, null), engineLib.adamWOptionsSchema.parse({}));
  const figures: Record<string, number> = { sft_examples: kept.length, preference_pairs: pairs.length, sft_steps: 0, dpo_steps: 0 };
  const sftSteps = kept.length === 0 ? 0 : options.sftSteps;
  const dpoSteps = pairs.length === 0 ? 0 : options.dpoSteps;
  const total = sftSteps + dpoSteps;

  // 1. SFT: mean negative log-likelihood of the kept rewrites' tokens.
  const sftRows = kept.map((k) => encode(k.query, k.rewrite));
  const nextSft = batcher(sftRows, options.batchSize, rng.fork('sft'));
  for (let step = 0; step < sftSteps; step++) {
    ctx.signal.throwIfAborted();
    const batch = nextSft();
    const lr = engineLib.warmupCosineLr(step, { peak: options.learningRate, warmup: Math.min(4, sftSteps), total: sftSteps, min: options.learningRate * 0.1 });
    const result = await engineLib.trainStep(model, optimizer, [batch], (rows) => {
      const { logprobs, mask } = engineLib.sequenceLogprobs(model, rows);
      return { loss: tf.neg(tf.div(tf.sum(logprobs), tf.sum(mask))) as Scalar, weight: 1 };
    }, { lr, maxGradNorm: 1, signal: ctx.signal });
    if (step === 0) figures.sft_first_loss = result.loss;
    figures.sft_last_loss = result.loss;
    figures.sft_steps = step + 1;
    ctx.metrics.log(step + 1, { phase_sft: 1, loss: result.loss, lr, grad_norm: result.gradNorm });
    ctx.progress.update(step + 1, total, 'rewriter steps');
    await yieldToEventLoop();
  }

  // 2. Partial-order alignment over the ranked pairs, the SFT model as the reference.
  if (dpoSteps > 0) {
    const encoded = pairs.map((p) => ({ chosen: encode(p.query, p.chosen), rejected: encode(p.query, p.rejected) }));
    const sums = (rows: Row[], frozen: boolean) => tf.sum(engineLib.sequenceLogprobs(model, rows, { frozen }).logprobs, 1) as Tensor1D;
    const reference: number[][] = [];
    for (let i = 0; i < encoded.length; i += options.batchSize) {
      const batch = encoded.slice(i, i + options.batchSize);
      const scores = tf.tidy(() => sums([...batch.map((p) => p.chosen), ...batch.map((p) => p.rejected)], true));
      const values = Array.from(await scores.data());
      scores.dispose();
      batch.forEach((_, j) => reference.push([values[j] as number, values[batch.length + j] as number]));
    }
    const indexed = encoded.map((pair, i) => ({ ...pair, reference: reference[i] as number[] }));
    const nextPairs = batcher(indexed, options.batchSize, rng.fork('dpo'));
    let accuracy = 0;
    for (let step = 0; step < dpoSteps; step++) {
      ctx.signal.throwIfAborted();
      const batch = nextPairs();
      const lr = engineLib.warmupCosineLr(step, { peak: options.learningRate, warmup: Math.min(4, dpoSteps), total: dpoSteps, min: options.learningRate * 0.1 });
      const kept: Tensor1D[] = []; // the margins, read after the step
      const result = await engineLib.trainStep(model, optimizer, [batch], (b) => {
        const scores = sums([...b.map((p) => p.chosen), ...b.map((p) => p.rejected)], false);
        const n = b.length;
        const out = dpoLoss(tf.slice(scores, 0, n) as Tensor1D, tf.slice(scores, n, n) as Tensor1D, tf.tensor1d(b.map((p) => p.reference[0] as number)), tf.tensor1d(b.map((p) => p.reference[1] as number)), { type: 'sigmoid', beta: options.beta, labelSmoothing: 0 });
        kept.push(tf.keep(tf.sub(out.chosenRewards, out.rejectedRewards) as Tensor1D));
        return { loss: out.loss, weight: 1 };
      }, { lr, maxGradNorm: 1, signal: ctx.signal });
      const values = kept[0] ? Array.from(await kept[0].data()) : [];
      tf.dispose(kept);
      accuracy = values.filter((m) => m > 0).length / Math.max(1, values.length);
      if (step === 0) figures.dpo_first_loss = result.loss;
      figures.dpo_last_loss = result.loss;
      figures.dpo_steps = step + 1;
      ctx.metrics.log(sftSteps + step + 1, { phase_dpo: 1, loss: result.loss, lr, grad_norm: result.gradNorm, 'rewards/accuracies': accuracy });
      ctx.progress.update(sftSteps + step + 1, total, 'rewriter steps');
      await yieldToEventLoop();
    }
    figures['dpo_rewards/accuracies'] = accuracy;
  }
  optimizer.dispose();
  await policy.inference.refresh();
  return figures;
}
