/**
 * The last part of a GRPO step: guided replay's importance weights, then `num_iterations` updates of
 * the clipped objective (TRL's `_compute_loss`) on the kept rollouts.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as engineLib from '../lib/engine/index.ts';
import { mean } from '../lib/rl/advantages.ts';
import { grpoLoss } from '../lib/rl/losses.ts';
import type { GrpoParams } from './index.ts';
import type { Rollout } from './rollout.ts';

/**
 * Guided replay is off-policy: a hinted completion y was sampled from π(·|x + hint) but is trained
 * as an answer to x. Each of its tokens is weighted by the truncated importance ratio
 *
 *   w_t = min(ρ̄, π(y_t | x, y_<t) / π(y_t | x + hint, y_<t))        (ρ̄ = `replay_max_ratio`)
 *
 * computed once before the update, detached, both at the sampling temperature. Truncation at ρ̄ is
 * V-trace's (Espeholt et al. 2018, IMPALA, eq. 1: ρ_t = min(ρ̄, π/μ)): it bounds the variance
 * where the plain prompt makes a token far likelier than the hint did. On-policy rollouts weigh 1.
 * Returns one weight per completion token of each rollout.
 */
export function replayWeights(model: engineLib.Model, rollouts: readonly Rollout[], p: Pick<GrpoParams, 'temperature' | 'replay_max_ratio' | 'mini_batch_size'>): number[][] {
  const weights = rollouts.map((r) => r.completion.tokens.map(() => 1));
  const hinted = rollouts.map((r, i) => ({ r, i })).filter(({ r }) => r.kind === 'hinted');
  for (let start = 0; start < hinted.length; start += p.mini_batch_size) {
    const batch = hinted.slice(start, start + p.mini_batch_size);
    const logprobs = (prompt: (r: Rollout) => number[]) =>
      tf.tidy(() => engineLib.sequenceLogprobs(model, batch.map(({ r }) => ({ prompt: prompt(r), completion: r.completion.tokens })), { frozen: true, temperature: p.temperature }).logprobs.arraySync() as number[][]);
    const plain = logprobs((r) => r.prompt);
    const sampled = logprobs((r) => r.sampledFrom);
    batch.forEach(({ r, i }, j) => {
      weights[i] = truncatedRatios((plain[j] as number[]).slice(0, r.completion.tokens.length), (sampled[j] as number[]).slice(0, r.completion.tokens.length), p.replay_max_ratio);
    });
  }
  return weights;
}

/** min(ρ̄, exp(log π_target − log π_behaviour)) per token. */
export function truncatedRatios(target: readonly number[], behaviour: readonly number[], maxRatio: number): number[] {
  return target.map((lp, t) => Math.min(maxRatio, Math.exp(lp - (behaviour[t] as number))));
}

export interface UpdateContext {
  model: engineLib.Model;
  reference: engineLib.Model | undefined;
  optimizer: engineLib.AdamW;
}

/** num_iterations clipped-objective updates on `rollouts` with per-token `advantages`; returns the loss metrics. */
export function updatePolicy(u: UpdateContext, rollouts: readonly Rollout[], advantages: readonly number[][], p: GrpoParams, lr: number): Record<string, number> {
  const { model, reference, optimizer } = u;
  const items = rollouts.map((r, j) => ({ row: { prompt: r.prompt, completion: r.completion.tokens }, advantage: advantages[j] as number[] }));
  const micro: (typeof items)[] = [];
  for (let i = 0; i < items.length; i += p.mini_batch_size) micro.push(items.slice(i, i + p.mini_batch_size));
  // The training log-probs divide the logits by the sampling temperature, as TRL does: the ratio
  // compares the distribution the completions were drawn from.
  const temperature = p.temperature;
  // Frozen log-probs per micro-batch, computed before any update of this step.
  const frozenLogprobs = (m: engineLib.Model, batch: typeof items) =>
    tf.tidy(() => engineLib.sequenceLogprobs(m, batch.map((b) => b.row), { frozen: true, temperature }).logprobs.arraySync() as number[][]);
  const referenceLogprobs = reference ? micro.map((b) => frozenLogprobs(reference, b)) : undefined;
  // TRL: with num_iterations 1 the old policy is the current one, detached; else one pass before the updates.
  const oldLogprobs = p.num_iterations > 1 ? micro.map((b) => frozenLogprobs(model, b)) : undefined;
  const pad = (values: number[], width: number) => [...values, ...new Array<number>(width - values.length).fill(0)];
  let kl: number[] = [];
  let clip: number[] = [];
  let result: engineLib.StepResult | undefined;
  for (let iteration = 0; iteration < p.num_iterations; iteration++) {
    kl = [];
    clip = [];
    result = engineLib.trainStep(
      model,
      optimizer,
      micro.map((batch, index) => ({ batch, index })),
      ({ batch, index }) => {
        const { logprobs, mask } = engineLib.sequenceLogprobs(model, batch.map((b) => b.row), { temperature });
        const width = logprobs.shape[1];
        const old = oldLogprobs ? tf.tensor2d(oldLogprobs[index] as number[][]) : tf.tensor2d(logprobs.arraySync());
        const ref = referenceLogprobs ? tf.tensor2d(referenceLogprobs[index] as number[][]) : undefined;
        const adv = tf.tensor2d(batch.map((b) => pad(b.advantage, width)));
        const out = grpoLoss(logprobs, old, ref, adv, mask, {
          type: p.loss_type,
          epsilon: p.epsilon,
          epsilonHigh: p.epsilon_high ?? p.epsilon,
          beta: p.beta,
          maxCompletionLength: p.max_completion_length,
        });
        kl.push(out.meanKl.dataSync()[0] as number);
        clip.push(out.clipFraction.dataSync()[0] as number);
        // trainStep divides the summed loss by the summed weight. dapo normalises by the tokens of
        // the whole batch; grpo and dr_grpo average over sequences; bnpo averages the micro-batch
        // token means (TRL's per-process normalisation).
        const tokens = batch.reduce((n, b) => n + b.row.completion.length, 0);
        const weight = p.loss_type === 'dapo' ? tokens : p.loss_type === 'bnpo' ? 1 : batch.length;
        return { loss: tf.mul(out.loss, weight) as tf.Scalar, weight };
      },
      { lr, maxGradNorm: p.max_grad_norm },
    );
  }
  return { loss: result?.loss ?? 0, grad_norm: result?.gradNorm ?? 0, kl: mean(kl), clip_ratio: mean(clip) };
}
