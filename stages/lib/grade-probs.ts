/**
 * A judge's probability for each grade, read from the answer tokens: log p(`<answer>G` | prefix)
 * for G = L1..L4 by teacher forcing, renormalised over the four grades. eval reads answer_first
 * checkpoints this way (TaoSR1's post-CoT); the serving judge reads every checkpoint this way, with
 * the prefix being the prompt plus the reasoning the model wrote before its answer.
 */
import type { Policy } from './policy.ts';
import { GRADES, type Grade } from './relevance/types.ts';

/** Sum of log p(`<answer>G` | prompt) per grade G, for each prompt: 4 teacher-forced rows per prompt. */
export async function gradeLogprobs(policy: Policy, prompts: number[][]): Promise<Record<Grade, number>[]> {
  const continuations = GRADES.map((g) => policy.tokenizer.encode(`<answer>${g}`));
  const rows = prompts.flatMap((prompt) => continuations.map((completion) => ({ prompt, completion })));
  // Through the policy's inference path (onnxruntime when it loaded, else tfjs).
  const values = await policy.inference.sequenceLogprobs(rows);
  return prompts.map((_, p) => Object.fromEntries(GRADES.map((g, k) => [g, (values[p * GRADES.length + k] as number[]).reduce((a, b) => a + b, 0)])) as Record<Grade, number>);
}

/** Probabilities renormalised over the four grades (the answer token could be anything else). */
export function normaliseGradeProbs(logprobs: Record<Grade, number>): Record<Grade, number> {
  const top = Math.max(...GRADES.map((g) => logprobs[g]));
  const weights = GRADES.map((g) => Math.exp(logprobs[g] - top));
  const total = weights.reduce((a, b) => a + b, 0);
  return Object.fromEntries(GRADES.map((g, i) => [g, (weights[i] as number) / total])) as Record<Grade, number>;
}

/** The grade with the highest probability (the lower grade on a tie). */
export function mostProbableGrade(probs: Record<Grade, number>): Grade {
  return GRADES.reduce((best, g) => (probs[g] > probs[best] ? g : best), GRADES[0] as Grade);
}
