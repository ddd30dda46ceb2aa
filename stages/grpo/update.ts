/**
 * The last part of a GRPO step: guided replay's importance weights, then `num_iterations` updates of
 * the clipped objective (TRL's `_compute_loss`) on the kept rollouts.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as engineLib from '#engine';
import { mean } from '../lib/relevance/grade-agreement.ts';
import { grpoLoss } from '../lib/rl/losses.ts';
import type { GrpoParams } from './params.ts';
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
export async function replayWeights(model: engineLib.Model, rollouts: readonly Rollout[], p: Pick<GrpoParams, 'temperature' | 'replay_max_ratio' | 'mini_batch_size'>): Promise<number[][]> {
  const weights = rollouts.map((r) => r.completion.tokens.map(() => 1));
  const hinted = rollouts.map((r, i) => ({ r, i })).filter(({ r }) => r.kind === 'hinted');
  for (let start = 0; start < hinted.length; start += p.mini_batch_size) {
    const batch = hinted.slice(start, start + p.mini_batch_size);
    const logprobs = (prompt: (r: Rollout) => number[]) =>
      frozenLogprobs(model, batch.map(({ r }) => ({ prompt: prompt(r), completion: r.completion.tokens })), p.temperature);
    const plain = await logprobs((r) => r.prompt);
    const sampled = await logprobs((r) => r.sampledFrom);
    batch.forEach(({ r, i }, j) => {
      weights[i] = truncatedRatios((plain[j] as number[]).slice(0, r.completion.tokens.length), (sampled[j] as number[]).slice(0, r.completion.tokens.length), p.replay_max_ratio);
    });
  }
  return weights;
}

/** Teacher-forced log-probs without gradients, read asynchronously (webgpu has no sync reads). */
async function frozenLogprobs(model: engineLib.Model, rows: engineLib.PromptCompletion[], temperature: number): Promise<number[][]> {
  const logprobs = tf.tidy(() => engineLib.sequenceLogprobs(model, rows, { frozen: true, temperature }).logprobs);
  const values = (await logprobs.array()) as number[][];
  logprobs.dispose();
  return values;
}

/** min(ρ̄, exp(log π_target − log π_behaviour)) per token. */
export function truncatedRatios(target: readonly number[], behaviour: readonly number[], maxRatio: number): number[] {
  return target.map((lp, t) => Math.min(maxRatio, Math.exp(lp - (behaviour[t] as number))));
}

export interface UpdateContext {
  model: engineLib.Model;
  reference: engineLib.Model | undefined;
  optimizer: engineLib.AdamW;
  /** The reference is the frozen base under LoRA adapters: its derived weights are released after use. */
  lora: boolean;
}

/** num_iterations clipped-objective updates on `rollouts` with per-token `advantages`; returns the loss metrics. */
export async function updatePolicy(u: UpdateContext, rollouts: readonly Rollout[], advantages: readonly number[][], p: GrpoParams, lr: number): Promise<Record<string, number>> {
  const { model, reference, optimizer } = u;
  const items = rollouts.map((r, j) => ({ row: { prompt: r.prompt, completion: r.completion.tokens }, advantage: advantages[j] as number[] }));
  const micro: (typeof items)[] = [];
  for (let i = 0; i < items.length; i += p.mini_batch_size) micro.push(items.slice(i, i + p.mini_batch_size));
  // The training log-probs divide the logits by the sampling temperature, as TRL does: the ratio
  // compares the distribution the completions were drawn from.
  const temperature = p.temperature;
  // Frozen log-probs per micro-batch, computed before any update of this step.
  const frozen = (m: engineLib.Model) => Promise.all(micro.map((b) => frozenLogprobs(m, b.map((x) => x.row), temperature)));
  const referenceLogprobs = reference ? await frozen(reference) : undefined;
  // Kept, the base's derived (transposed) weights would be the second copy LoRA avoids.
  if (reference && u.lora) engineLib.releaseFrozenWeights(reference);
  // TRL: with num_iterations 1 the old policy is the current one, detached; else one pass before the updates.
  const oldLogprobs = p.num_iterations > 1 ? await frozen(model) : undefined;
  const pad = (values: number[], width: number) => [...values, ...new Array<number>(width - values.length).fill(0)];
  let kl: tf.Tensor[] = [];
  let clip: tf.Tensor[] = [];
  let result: engineLib.StepResult | undefined;
  for (let iteration = 0; iteration < p.num_iterations; iteration++) {
    tf.dispose([...kl, ...clip]);
    kl = [];
    clip = [];
    result = await engineLib.trainStep(
      model,
      optimizer,
      micro.map((batch, index) => ({ batch, index })),
      ({ batch, index }) => {
        const { logprobs, mask } = engineLib.sequenceLogprobs(model, batch.map((b) => b.row), { temperature });
        const width = logprobs.shape[1];
        const old = oldLogprobs ? tf.tensor2d(oldLogprobs[index] as number[][]) : engineLib.stopGradient(logprobs);
        const ref = referenceLogprobs ? tf.tensor2d(referenceLogprobs[index] as number[][]) : undefined;
        const adv = tf.tensor2d(batch.map((b) => pad(b.advantage, width)));
        const out = grpoLoss(logprobs, old, ref, adv, mask, {
          type: p.loss_type,
          epsilon: p.epsilon,
          epsilonHigh: p.epsilon_high ?? p.epsilon,
          beta: p.beta,
          maxCompletionLength: p.max_completion_length,
        });
        kl.push(tf.keep(out.meanKl)); // read after the step: webgpu reads are async
        clip.push(tf.keep(out.clipFraction));
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
  const read = async (ts: tf.Tensor[]) => Promise.all(ts.map(async (t) => (await t.data())[0] as number));
  const means = { kl: mean(await read(kl)), clip_ratio: mean(await read(clip)) };
  tf.dispose([...kl, ...clip]);
  return { loss: result?.loss ?? 0, grad_norm: result?.gradNorm ?? 0, ...means };
}
