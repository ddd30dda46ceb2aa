/**
 * Teacher-forced log-probabilities of completions given prompts, batched: what DPO needs for
 * policy and reference, and GRPO for its importance ratios. Works inside `tf.variableGrads`
 * (policy) and under `tf.tidy` alone (reference, no gradients).
 */
import * as tf from '@tensorflow/tfjs-core';
import { tokenLogprobs } from './loss.ts';
import { logitsAt, type Model } from './model.ts';

export interface PromptCompletion {
  prompt: number[];
  completion: number[];
}

export interface SequenceLogprobs {
  /** (B, C) log p(completion token j | prompt, earlier tokens); 0 past a row's completion. C = longest completion. */
  logprobs: tf.Tensor2D;
  /** (B, C) 1 for real completion tokens, 0 for padding. */
  mask: tf.Tensor2D;
}

/**
 * Rows are right-padded (causal attention never looks right, so padding there changes nothing).
 * Sum over axis 1 for a sequence log-probability, or divide by the mask's sum for a per-token mean.
 * `frozen: true` (a reference model, no gradients wanted) reuses cached derived weights.
 * `temperature` divides the logits first: the log-probs of the distribution the completions were
 * sampled from (TRL's GRPOTrainer does the same in `_get_per_token_logps`); 1 by default.
 */
export function sequenceLogprobs(model: Model, batch: PromptCompletion[], options: { frozen?: boolean; temperature?: number } = {}): SequenceLogprobs {
  if (batch.some((e) => e.prompt.length === 0)) throw new Error('sequenceLogprobs: every prompt needs at least one token');
  const width = Math.max(...batch.map((e) => e.prompt.length + e.completion.length));
  const longest = Math.max(1, ...batch.map((e) => e.completion.length));
  const ids = batch.map((e) => [...e.prompt, ...e.completion, ...new Array<number>(width - e.prompt.length - e.completion.length).fill(0)]);
  const attentionMask = batch.map((e) => ids[0]!.map((_, t) => (t < e.prompt.length + e.completion.length ? 1 : 0)));
  // Completion token j of row b is predicted by the logits at position prompt.length + j - 1.
  const rows: number[] = [];
  const targets: number[] = [];
  const maskValues: number[] = [];
  batch.forEach((e, b) => {
    for (let j = 0; j < longest; j++) {
      const real = j < e.completion.length;
      rows.push(b * width + (real ? e.prompt.length + j - 1 : 0));
      targets.push(real ? (e.completion[j] as number) : 0);
      maskValues.push(real ? 1 : 0);
    }
  });
  return tf.tidy(() => {
    const logits = logitsAt(model, ids, rows, { attentionMask, frozen: options.frozen }); // (B*C, V)
    const picked = options.temperature === undefined || options.temperature === 1 ? logits : (tf.div(logits, options.temperature) as tf.Tensor2D);
    const mask = tf.tensor2d(maskValues, [batch.length, longest]);
    const logprobs = tf.mul(tf.reshape(tokenLogprobs(picked, tf.tensor1d(targets, 'int32')), [batch.length, longest]), mask) as tf.Tensor2D;
    return { logprobs, mask };
  });
}
