/**
 * A judge's probability for each grade, read from the answer tokens: log p(`<answer>G` | prefix)
 * for G = L1..L4 by teacher forcing, renormalised over the four grades (relevance/grade-pooling.ts
 * turns them into a grade). eval reads answer_first checkpoints this way (TaoSR1's post-CoT); the
 * serving judge reads every checkpoint this way, with the prefix being the prompt plus the reasoning
 * the model wrote before its answer.
 */
import { normaliseGradeProbs, tuneCumulativeThreshold } from '../relevance/grade-pooling.ts';
import { GRADES, type Grade } from '../relevance/types.ts';
import type { Policy } from './model.ts';

/** Sum of log p(`<answer>G` | prompt) per grade G, for each prompt: 4 teacher-forced rows per prompt. */
export async function gradeLogprobs(policy: Policy, prompts: number[][]): Promise<Record<Grade, number>[]> {
  const continuations = GRADES.map((g) => policy.tokenizer.encode(`<answer>${g}`));
  const rows = prompts.flatMap((prompt) => continuations.map((completion) => ({ prompt, completion })));
  // Through the policy's inference path (onnxruntime when it loaded, else tfjs).
  const values = await policy.inference.sequenceLogprobs(rows);
  return prompts.map((_, p) => Object.fromEntries(GRADES.map((g, k) => [g, (values[p * GRADES.length + k] as number[]).reduce((a, b) => a + b, 0)])) as Record<Grade, number>);
}

/**
 * Grade probabilities read after each prefix (`gradeLogprobs`, renormalised), undefined where the
 * prefix is. Four teacher-forced rows per prefix: a call takes about `batchSize` rows, so its logits
 * (rows x length x vocab) stay the size generation's batches have.
 */
export async function gradeProbsAfter(
  policy: Policy,
  prefixes: readonly (number[] | undefined)[],
  options: { batchSize: number; signal?: AbortSignal },
): Promise<(Record<Grade, number> | undefined)[]> {
  const read = prefixes.flatMap((prefix, i) => (prefix ? [i] : []));
  const perCall = Math.max(1, Math.floor(options.batchSize / GRADES.length));
  const probs: (Record<Grade, number> | undefined)[] = prefixes.map(() => undefined);
  for (let start = 0; start < read.length; start += perCall) {
    options.signal?.throwIfAborted();
    const chunk = read.slice(start, start + perCall);
    const logprobs = await gradeLogprobs(policy, chunk.map((i) => prefixes[i] as number[]));
    chunk.forEach((i, k) => (probs[i] = normaliseGradeProbs(logprobs[k] as Record<Grade, number>)));
  }
  return probs;
}

/** The text before the answer tag (all of it when there is none): what the grade's probabilities are read after. */
function beforeAnswer(text: string): string {
  const at = text.indexOf('<answer>');
  return at < 0 ? text : text.slice(0, at);
}

/**
 * The ids a think-first judge's grade is read after: its prompt, then the reasoning it wrote; undefined
 * when `<answer>G` would not fit the model's context after them.
 */
export function answerPrefix(policy: Policy, promptIds: readonly number[], text: string): number[] | undefined {
  const answerRoom = Math.max(...GRADES.map((g) => policy.tokenizer.encode(`<answer>${g}`).length));
  const prefix = [...promptIds, ...policy.tokenizer.encode(beforeAnswer(text))];
  return prefix.length + answerRoom <= policy.model.config.max_position_embeddings ? prefix : undefined;
}

/**
 * An answer_first judge's cumulative threshold (tuneCumulativeThreshold) on the grade probabilities
 * read after each tuning prompt: how eval and the served judge both tune it.
 */
export async function tuneAnswerFirstThreshold(
  policy: Policy,
  tuning: readonly { gold: Grade; promptIds: number[] }[],
  options: { batchSize: number; signal?: AbortSignal },
): Promise<{ threshold: number; macroF1: number }> {
  const probs = await gradeProbsAfter(policy, tuning.map((t) => t.promptIds), options);
  return tuneCumulativeThreshold(tuning.map((t, i) => ({ gold: t.gold, probs: probs[i] as Record<Grade, number> })));
}
