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

export type ScaleRewards = 'group' | 'batch' | 'none';
export const ADVANTAGE_EPS = 1e-4;

export function mean(values: readonly number[]): number {
  return values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length;
}

/** Unbiased (n - 1) standard deviation, as torch.std; 0 for fewer than two values. */
export function std(values: readonly number[]): number {
  if (values.length < 2) return 0;
  const m = mean(values);
  return Math.sqrt(values.reduce((acc, v) => acc + (v - m) ** 2, 0) / (values.length - 1));
}

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

/**
 * Stepwise advantages (SRPO; TaoSR-SHE's stepwise hybrid estimation): each reasoning step k has its
 * own reward r_{i,k}, group-normalised like the outcome reward into Â_{i,k}. A token in step j gets
 *
 *   A_{i,t} = A_i(outcome) + Σ_{k ≥ j} Â_{i,k}
 *
 * so an early step is credited with what follows from it, and a token after the last step (the
 * answer) gets the outcome advantage alone. Returns, per completion, the advantage of each step
 * index 0..K-1 plus a final entry for tokens outside every step.
 */
export function stepwiseAdvantages(
  outcome: readonly number[],
  stepRewards: readonly (readonly number[])[],
  groupSize: number,
  scale: ScaleRewards,
): number[][] {
  const stepCount = stepRewards[0]?.length ?? 0;
  if (stepRewards.length !== outcome.length || stepRewards.some((s) => s.length !== stepCount)) {
    throw new Error('stepwiseAdvantages: every completion needs one reward per step');
  }
  const outcomeAdvantages = groupAdvantages(outcome, groupSize, scale);
  const perStep = Array.from({ length: stepCount }, (_, k) =>
    groupAdvantages(
      stepRewards.map((s) => s[k] as number),
      groupSize,
      scale,
    ),
  );
  return outcomeAdvantages.map((base, i) => {
    const result = new Array<number>(stepCount + 1).fill(base);
    let suffix = 0;
    for (let k = stepCount - 1; k >= 0; k--) {
      suffix += perStep[k]?.[i] as number;
      result[k] = base + suffix;
    }
    return result;
  });
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

/**
 * The unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models Trained on
 * Code"): with n samples of which c are correct, 1 - C(n-c, k) / C(n, k), computed as a product
 * to stay stable.
 */
export function passAtK(n: number, c: number, k: number): number {
  if (k > n) throw new Error(`pass@${k} needs at least ${k} samples, got ${n}`);
  if (n - c < k) return 1;
  let missAll = 1;
  for (let i = n - c + 1; i <= n; i++) missAll *= 1 - k / i;
  return 1 - missAll;
}
