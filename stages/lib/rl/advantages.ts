/**
 * Group-relative advantages (GRPO, DeepSeekMath §4.1.2), as Hugging Face TRL's GRPOTrainer computes
 * them in `_generate_and_score_completions`:
 *
 *   A_i = r_i - mean(r_group)                      then, by `scale_rewards`:
 *   'group': A_i / (std(r_group) + eps)            (the original GRPO)
 *   'batch': A_i / (std(r_batch) + eps)            (Dr. GRPO / "Understanding R1-Zero" suggests
 *   'none' : A_i                                    less per-group scaling)
 *
 * TRL uses the unbiased std (torch.std) and eps = 1e-4. Completions are laid out group after group:
 * indices [g*G, (g+1)*G) belong to prompt g.
 */
import { mean, std } from '../relevance/grade-agreement.ts';

export type ScaleRewards = 'group' | 'batch' | 'none';
export const ADVANTAGE_EPS = 1e-4;


function groups<T>(values: readonly T[], groupSize: number): T[][] {
  if (groupSize < 1 || values.length % groupSize !== 0) {
    throw new Error(`${values.length} rewards cannot be split into groups of ${groupSize}`);
  }
  const out: T[][] = [];
  for (let start = 0; start < values.length; start += groupSize) out.push(values.slice(start, start + groupSize));
  return out;
}

export function groupAdvantages(rewards: readonly number[], groupSize: number, scale: ScaleRewards): number[] {
  const batchStd = std(rewards);
  return groups(rewards, groupSize).flatMap((group) => {
    const m = mean(group);
    const divisor = scale === 'group' ? std(group) + ADVANTAGE_EPS : scale === 'batch' ? batchStd + ADVANTAGE_EPS : 1;
    return group.map((r) => (r - m) / divisor);
  });
}

/** A stepped reward's weight and its unweighted per-step values, per completion (see rewards.ts). */
export interface StepRewards {
  weight: number;
  steps: readonly (readonly number[])[];
}

/**
 * Stepwise advantages (TaoSR-SHE's stepwise hybrid estimation; SRPO). The outcome reward R_i is the
 * weighted sum of the rewards that return no steps; each stepped reward f (weight w_f) gives step k
 * of completion i its own value s^f_{i,k}. Each is normalised on its own by `scale_rewards`
 * (norm(x)_i = (x_i − mean_group x) / divisor, as `groupAdvantages`), and a token in step j gets
 *
 *   A_{i,t} = norm(R)_i + Σ_f w_f · Σ_{k ≥ j} norm(s^f_{·,k})_i
 *
 * so an early step is credited with what follows from it, and a token outside every step (the
 * tags, the answer) gets the outcome advantage alone. The weight multiplies after normalising: under
 * 'group' scaling a weight inside the normalisation would cancel. The step rewards are not in R, so
 * nothing is counted twice. Returns, per completion, the advantage of each step index 0..K-1 plus a
 * final entry (index K) for tokens outside every step.
 */
export function stepwiseAdvantages(outcome: readonly number[], stepped: readonly StepRewards[], groupSize: number, scale: ScaleRewards): number[][] {
  const stepCount = stepped[0]?.steps[0]?.length ?? 0;
  for (const reward of stepped) {
    if (reward.steps.length !== outcome.length || reward.steps.some((s) => s.length !== stepCount)) {
      throw new Error('stepwiseAdvantages: every completion needs one reward per step, from every stepped reward');
    }
  }
  const outcomeAdvantages = groupAdvantages(outcome, groupSize, scale);
  // stepTerm[k][i] = Σ_f w_f · norm(s^f_{·,k})_i
  const stepTerm = Array.from({ length: stepCount }, (_, k) => {
    const term = new Array<number>(outcome.length).fill(0);
    for (const reward of stepped) {
      groupAdvantages(reward.steps.map((s) => s[k] as number), groupSize, scale).forEach((a, i) => (term[i] = (term[i] as number) + reward.weight * a));
    }
    return term;
  });
  return outcomeAdvantages.map((base, i) => {
    const result = new Array<number>(stepCount + 1).fill(base);
    let suffix = 0;
    for (let k = stepCount - 1; k >= 0; k--) {
      suffix += stepTerm[k]?.[i] as number;
      result[k] = base + suffix;
    }
    return result;
  });
}

export interface DyKnowScaling {
  /** Multiplies positive advantages. */
  alpha: number;
  /** |A| is clamped to this after scaling (the paper uses 2). */
  clamp: number;
}

/** σ(x) = 1 / (1 + e^−x). */
function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/**
 * DyKnow-RAG's posterior-driven inter-group advantage scaling (arXiv 2510.11122, the RL section's
 * dual-group GRPO, as summarised in issue #15; the full text was not at hand to check equation
 * numbers). Each prompt has 2G rollouts: G without the context chunk, then G with it.
 *
 *   Ã_i  = (r_i − mean(r_union)) / (std(r_union) + eps)      over the union of both groups
 *   β    = 4 · σ(4 · (acc_with − acc_without))               per prompt, from the correctness gap
 *   T(Ã) = α · Ã  if Ã > 0,  β · Ã  otherwise,  then clamped to [−clamp, clamp]
 *
 * β ∈ (0, 4) and equals 2 when the context makes no difference; where the context helps, wrong
 * answers (negative advantages) weigh more, and where it misleads, less. `correct` is whether each
 * rollout's grade is the gold one (what acc counts). Layout: prompt after prompt, 2G rollouts each.
 */
export function dyknowAdvantages(rewards: readonly number[], correct: readonly boolean[], groupSize: number, scaling: DyKnowScaling): { advantages: number[]; betas: number[] } {
  if (correct.length !== rewards.length) throw new Error(`dyknowAdvantages: ${rewards.length} rewards but ${correct.length} verdicts`);
  const union = groups(rewards, 2 * groupSize);
  const verdicts = groups(correct, 2 * groupSize);
  const betas: number[] = [];
  const advantages = union.flatMap((group, g) => {
    const right = verdicts[g] as boolean[];
    const accuracy = (from: number) => right.slice(from, from + groupSize).filter(Boolean).length / groupSize;
    const beta = 4 * sigmoid(4 * (accuracy(groupSize) - accuracy(0)));
    betas.push(beta);
    const m = mean(group);
    const divisor = std(group) + ADVANTAGE_EPS;
    return group.map((r) => {
      const a = (r - m) / divisor;
      const scaled = a > 0 ? scaling.alpha * a : beta * a;
      return Math.min(scaling.clamp, Math.max(-scaling.clamp, scaled));
    });
  });
  return { advantages, betas };
}

/**
 * SRPO's diversified data filtering (TaoSR-SHE's stepwise RL, as issue #15 summarises it; the paper
 * was not at hand to cite a section):
 * a group whose completions all reason the same way gives a gradient that only sharpens one path
 * and drives entropy down. A group is kept when its distinct reasoning paths (the `<think>` blocks,
 * whitespace-normalised) number at least `minDistinct`. Returns the indices of the groups to keep.
 */
export function diverseGroups(reasoning: readonly string[], groupSize: number, minDistinct: number): number[] {
  return groups(reasoning, groupSize)
    .map((group, index) => ({ index, distinct: new Set(group.map((r) => r.replace(/\s+/g, ' ').trim())).size }))
    .filter(({ distinct }) => distinct >= minDistinct)
    .map(({ index }) => index);
}

/**
 * Difficulty-based dynamic sampling (TaoSR1; DAPO's "dynamic sampling"): a group whose completions
 * are all right or all wrong has zero advantage everywhere and teaches nothing, so it is dropped.
 * Returns the indices of the groups to keep.
 */
export function informativeGroups(correct: readonly boolean[], groupSize: number): number[] {
  return groups(correct, groupSize)
    .map((group, index) => ({ index, right: group.filter(Boolean).length, size: group.length }))
    .filter(({ right, size }) => right > 0 && right < size)
    .map(({ index }) => index);
}
