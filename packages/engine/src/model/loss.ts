/**
 * Token log-probabilities and the masked cross-entropy built on them; `sequenceLogprobs`, SFT and
 * the tests all go through `tokenLogprobs`, so the three agree by construction.
 */
import * as tf from '@tensorflow/tfjs-core';
import { fusedKernels, fusedTokenLogprobs } from '../runtime/fused.ts';

/**
 * log p(target_n | row n) for logits (N, V) and targets (N). Picks with a one-hot product rather
 * than a gather so the gradient needs no scatter.
 */
export function tokenLogprobs(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Tensor1D {
  if (fusedKernels()) return fusedTokenLogprobs(logits, targets);
  const vocab = logits.shape[1];
  const logp = tf.logSoftmax(logits); // (N, V)
  // int32 one-hot then cast: tfjs-wasm 4.22's OneHot with dtype float32 writes integer bit patterns.
  const picks = tf.cast(tf.oneHot(tf.cast(targets, 'int32'), vocab), 'float32'); // (N, V)
  return tf.sum(tf.mul(logp, picks), 1) as tf.Tensor1D; // (N)
}

/**
 * Mean cross-entropy over the rows whose mask is 1 (loss on completion tokens only, SFT style):
 * -sum_n mask_n log p(target_n) / sum_n mask_n. `reduction: 'sum'` drops the division, which a
 * caller uses to weight micro-batches by their token count (see `accumulateGradients`).
 * A mask with no 1s gives 0, not NaN.
 */
export function maskedCrossEntropy(
  logits: tf.Tensor2D,
  targets: tf.Tensor1D,
  mask: tf.Tensor1D,
  reduction: 'mean' | 'sum' = 'mean',
): tf.Scalar {
  return tf.tidy(() => {
    const nll = tf.neg(tf.sum(tf.mul(tokenLogprobs(logits, targets), mask)));
    if (reduction === 'sum') return nll as tf.Scalar;
    return tf.div(nll, tf.maximum(tf.sum(mask), 1)) as tf.Scalar;
  });
}
