/**
 * Preference and policy-gradient losses on TensorFlow.js tensors, following Hugging Face TRL
 * (`trl/trainer/dpo_trainer.py: DPOTrainer.dpo_loss`, `trl/trainer/grpo_trainer.py:
 * GRPOTrainer._compute_loss`). Pure functions of log-probabilities: the model and the batching
 * live in the stages.
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * log σ(x) as −softplus(−x). tfjs' own `logSigmoid` is a customGrad whose gradient closes over its
 * input without saving it, so under the `tf.tidy` below, inside `tf.variableGrads`, the backward
 * pass reads a disposed tensor ("Cannot read properties of undefined (reading 'backend')").
 */
function logSigmoid(x: tf.Tensor): tf.Tensor {
  return tf.neg(tf.softplus(tf.neg(x)));
}

export type DpoLossType = 'sigmoid' | 'ipo' | 'hinge' | 'robust';

export interface DpoLossOptions {
  type: DpoLossType;
  beta: number;
  /** cDPO / robust DPO: the assumed probability that a preference label is flipped. */
  labelSmoothing: number;
}

export interface DpoLossResult {
  /** Scalar mean loss over the batch. */
  loss: tf.Scalar;
  /** β (log π(y_w|x) − log π_ref(y_w|x)), per pair. */
  chosenRewards: tf.Tensor1D;
  /** β (log π(y_l|x) − log π_ref(y_l|x)), per pair. */
  rejectedRewards: tf.Tensor1D;
}

/**
 * With h = (log π(y_w) − log π(y_l)) − (log π_ref(y_w) − log π_ref(y_l)) per pair:
 * - sigmoid (DPO, Rafailov et al. 2023, eq. 7; with smoothing ε, cDPO):
 *     −(1−ε) log σ(βh) − ε log σ(−βh)
 * - robust (Chowdhury et al. 2024, "Provably Robust DPO"):
 *     (−(1−ε) log σ(βh) + ε log σ(−βh)) / (1 − 2ε)
 * - hinge (RSO, Liu et al. 2023): max(0, 1 − βh)
 * - ipo (Azar et al. 2023, eq. 17): (h − 1/(2β))²; TRL feeds IPO length-averaged log-probs, so
 *   callers pass per-token means for this type.
 * Inputs are per-pair sequence log-probabilities, shape [B].
 */
export function dpoLoss(
  policyChosen: tf.Tensor1D,
  policyRejected: tf.Tensor1D,
  referenceChosen: tf.Tensor1D,
  referenceRejected: tf.Tensor1D,
  options: DpoLossOptions,
): DpoLossResult {
  const { beta, labelSmoothing: eps } = options;
  return tf.tidy(() => {
    const h = tf.sub(tf.sub(policyChosen, policyRejected), tf.sub(referenceChosen, referenceRejected));
    const scaled = tf.mul(h, beta);
    let losses: tf.Tensor;
    switch (options.type) {
      case 'sigmoid':
        losses = tf.sub(tf.mul(logSigmoid(scaled), -(1 - eps)), tf.mul(logSigmoid(tf.neg(scaled)), eps));
        break;
      case 'robust':
        losses = tf.div(
          tf.add(tf.mul(logSigmoid(scaled), -(1 - eps)), tf.mul(logSigmoid(tf.neg(scaled)), eps)),
          1 - 2 * eps,
        );
        break;
      case 'hinge':
        losses = tf.relu(tf.sub(1, scaled));
        break;
      case 'ipo':
        losses = tf.square(tf.sub(h, 1 / (2 * beta)));
        break;
    }
    return {
      loss: tf.mean(losses) as tf.Scalar,
      chosenRewards: tf.mul(tf.sub(policyChosen, referenceChosen), beta) as tf.Tensor1D,
      rejectedRewards: tf.mul(tf.sub(policyRejected, referenceRejected), beta) as tf.Tensor1D,
    };
  });
}

export type GrpoLossType = 'grpo' | 'bnpo' | 'dr_grpo' | 'dapo';

export interface GrpoLossOptions {
  type: GrpoLossType;
  /** Lower clip range ε: the ratio is clipped to [1 − ε, 1 + ε_high]. */
  epsilon: number;
  /** Upper clip range (DAPO's "clip-higher"); equal to epsilon for symmetric PPO clipping. */
  epsilonHigh: number;
  /** KL coefficient; with 0 the reference term is skipped and no reference model is needed. */
  beta: number;
  /** dr_grpo normalises by batch × this (the generation budget), not by the tokens generated. */
  maxCompletionLength: number;
}

export interface GrpoLossResult {
  loss: tf.Scalar;
  /** Mean k3 KL over completion tokens (0 when beta is 0). */
  meanKl: tf.Scalar;
  /** Share of completion tokens whose ratio was clipped (TRL's clip_ratio/region_mean). */
  clipFraction: tf.Scalar;
}

/**
 * Per token, with ρ = exp(log π − log π_old) and advantage A:
 *   ℓ = −min(ρA, clip(ρ, 1−ε, 1+ε_high)A) + β·KL₃,   KL₃ = exp(r − log π) − (r − log π) − 1
 * where r = log π_ref (Schulman's k3 estimator, unbiased and non-negative). Aggregation:
 * - grpo: mean over each sequence's tokens, then over sequences (the original; length-biased)
 * - bnpo: sum over all tokens / number of tokens in the batch
 * - dr_grpo: sum over all tokens / (B × maxCompletionLength) (Liu et al. 2025, Dr. GRPO)
 * - dapo: sum over all tokens / tokens in the whole generation batch; with one process and no
 *   accumulation split that equals bnpo, which is what this computes.
 * Shapes: log-probs, advantages and mask are [B, T]; mask is 1 on completion tokens.
 */
export function grpoLoss(
  logprobs: tf.Tensor2D,
  oldLogprobs: tf.Tensor2D,
  referenceLogprobs: tf.Tensor2D | undefined,
  advantages: tf.Tensor2D,
  mask: tf.Tensor2D,
  options: GrpoLossOptions,
): GrpoLossResult {
  return tf.tidy(() => {
    const ratio = tf.exp(tf.sub(logprobs, oldLogprobs));
    const clipped = tf.clipByValue(ratio, 1 - options.epsilon, 1 + options.epsilonHigh);
    let perToken = tf.neg(tf.minimum(tf.mul(ratio, advantages), tf.mul(clipped, advantages)));

    let kl: tf.Tensor = tf.zerosLike(logprobs);
    if (options.beta !== 0) {
      if (!referenceLogprobs) throw new Error('grpoLoss: beta is not 0 but no reference log-probs were given');
      const diff = tf.sub(referenceLogprobs, logprobs);
      kl = tf.sub(tf.sub(tf.exp(diff), diff), 1);
      perToken = tf.add(perToken, tf.mul(kl, options.beta));
    }

    const masked = tf.mul(perToken, mask);
    const tokens = tf.maximum(tf.sum(mask), 1);
    let loss: tf.Tensor;
    switch (options.type) {
      case 'grpo':
        loss = tf.mean(tf.div(tf.sum(masked, 1), tf.maximum(tf.sum(mask, 1), 1)));
        break;
      case 'bnpo':
      case 'dapo':
        loss = tf.div(tf.sum(masked), tokens);
        break;
      case 'dr_grpo':
        loss = tf.div(tf.sum(masked), logprobs.shape[0] * options.maxCompletionLength);
        break;
    }

    // A token counts as clipped when clipping changed its objective: ratio below 1 − ε with a
    // negative advantage, or above 1 + ε_high with a positive one (TRL's region accounting).
    const low = tf.logicalAnd(tf.less(ratio, 1 - options.epsilon), tf.less(advantages, 0));
    const high = tf.logicalAnd(tf.greater(ratio, 1 + options.epsilonHigh), tf.greater(advantages, 0));
    const clippedTokens = tf.sum(tf.mul(tf.cast(tf.logicalOr(low, high), 'float32'), mask));

    return {
      loss: loss as tf.Scalar,
      meanKl: tf.div(tf.sum(tf.mul(kl, mask)), tokens) as tf.Scalar,
      clipFraction: tf.div(clippedTokens, tokens) as tf.Scalar,
    };
  });
}
