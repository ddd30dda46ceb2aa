/**
 * What sft, sample, dpo, grpo and eval share about judging a model's completions: reading the icl stage's
 * prompt records (checked line by line), the reference reasoning of each example, parsing and
 * verifying one completion, and a greedy accuracy probe on dev prompts.
 */
import { join } from 'node:path';
import { Rng } from '../../pipeline/api.ts';
import { parseCompletion, verifyCompletion, type ParsedCompletion, type ReasoningSteps, type Verification } from './relevance/completion.ts';
import { classificationMetrics, judgeDegeneracy, type Degeneracy } from './relevance/grade-agreement.ts';
import { analyzePair, toReasoningSteps } from './relevance/analysis.ts';
import { readChecked } from './io/jsonl.ts';
import type { KnowledgeGraph } from './relevance/kg.ts';
import type { PromptRecord } from './relevance/prompts.ts';
import { GRADES, type Grade } from './relevance/types.ts';
import type { Policy } from './judge/model.ts';

/** What is wrong with a prompt record for the RL stages (the key and the rule), or undefined. */
export function promptRecordProblem(record: PromptRecord): string | undefined {
  if (typeof record?.id !== 'string') return 'id: expected a string';
  if (!Array.isArray(record.messages) || record.messages.length === 0) return 'messages: expected a non-empty list';
  if (typeof record.example?.query !== 'string') return 'example.query: expected a string';
  if (!GRADES.includes(record.example.label)) return `example.label: expected one of ${GRADES.join(', ')}, got ${JSON.stringify(record.example.label)}`;
  if (!Array.isArray(record.example.meta?.rules)) return 'example.meta.rules: expected a list';
  return undefined;
}

/** Reads `<split>.jsonl` of a prompts artifact. */
export function readPromptRecords(promptsDir: string, split: string): Promise<PromptRecord[]> {
  return readChecked<PromptRecord>(join(promptsDir, `${split}.jsonl`), promptRecordProblem);
}

/** The reference reasoning of every record (the relevance analysis over the knowledge graph), by id. */
export function referenceSteps(records: readonly PromptRecord[], kg: KnowledgeGraph): Map<string, ReasoningSteps> {
  return new Map(records.map((r) => [r.id, toReasoningSteps(analyzePair(r.example.query, r.example.item, kg))]));
}

export interface Judgement {
  parsed: ParsedCompletion;
  verification: Verification;
  /** The grade is the gold one and the format parses: what pass@k and DPO's "correct" count. */
  correct: boolean;
}

export function judgeCompletion(text: string, reference: ReasoningSteps, gold: Grade): Judgement {
  const parsed = parseCompletion(text);
  const verification = verifyCompletion(parsed, reference, gold);
  return { parsed, verification, correct: verification.labelCorrect && parsed.formatOk };
}

/** What a probe reads of a prompt record (SFT records have these too). */
export type ProbeRecord = Pick<PromptRecord, 'id' | 'messages' | 'example'>;

export interface AccuracyProbe {
  acc4: number;
  acc2: number;
  macro_f1: number;
  format_valid: number;
  count: number;
  /** Whether the probed model has collapsed onto one grade (judgeDegeneracy); absent for the baseline's figures. */
  degeneracy?: Degeneracy;
}

/**
 * The dev prompts a training stage probes: a sample of `count` (all when count is 0 or larger than
 * the split) drawn with the pipeline seed alone, so sft, dpo and grpo of one pipeline probe the same
 * prompts and their figures compare. Random, not the first N: splits are grouped by query, so the
 * first N would be the candidates of a handful of queries.
 */
export function probeSample<T>(records: readonly T[], count: number, seed: number): T[] {
  return seededSample(records, count, new Rng(seed, 'dev-probe'));
}

/**
 * `count` records drawn at random with `rng` (all when count is 0 or not below the length), in
 * their original order. What every "at most N" option uses instead of the first N: splits are
 * grouped by query, so the first N would be a handful of queries.
 */
export function seededSample<T>(records: readonly T[], count: number, rng: Rng): T[] {
  if (count <= 0 || count >= records.length) return [...records];
  const chosen = rng.shuffle(records.map((_, i) => i)).slice(0, count);
  return chosen.sort((a, b) => a - b).map((i) => records[i] as T);
}

/**
 * `count` records drawn at random with `rng`, stratified by `stratumOf` (all when count is 0 or
 * not below the length), in their original order. Each stratum gets its proportional share
 * count·n_s/n rounded down, and the largest remainders take the seats left (Hamilton's method), so
 * a capped evaluation keeps the split's grade shares to within one pair each instead of by chance:
 * a uniform draw of 400 from a split with 3 % L2 holds 12 ± 3.4 L2 pairs; this draw holds 12.
 * Example: strata of 50 / 30 / 20 records, count 10: 5 / 3 / 2.
 */
export function stratifiedSample<T>(records: readonly T[], count: number, stratumOf: (record: T) => string, rng: Rng): T[] {
  if (count <= 0 || count >= records.length) return [...records];
  const strata = new Map<string, number[]>();
  records.forEach((record, i) => {
    const key = stratumOf(record);
    strata.set(key, [...(strata.get(key) ?? []), i]);
  });
  // Sorted keys: the allocation and each stratum's stream do not depend on the records' order.
  const keys = [...strata.keys()].sort();
  const quota = keys.map((key) => (count * (strata.get(key) as number[]).length) / records.length);
  const seats = quota.map(Math.floor);
  const left = count - seats.reduce((a, b) => a + b, 0);
  const byRemainder = keys.map((_, k) => k).sort((a, b) => (quota[b] as number) - (seats[b] as number) - ((quota[a] as number) - (seats[a] as number)) || a - b);
  for (const k of byRemainder.slice(0, left)) seats[k] = (seats[k] as number) + 1;
  const chosen = keys.flatMap((key, k) => rng.fork(`stratum-${key}`).shuffle([...(strata.get(key) as number[])]).slice(0, seats[k]));
  return chosen.sort((a, b) => a - b).map((i) => records[i] as T);
}

/**
 * The lexical baseline scored on `probe` (dev prompts): the figure a trained judge's dev probe is
 * compared with. It is fitted and its cut points tuned on the train split, as eval does when dev is
 * the split scored: tuned on the dev prompts it is scored on, it would be flattered.
 */
export async function baselineAccuracy(promptsDir: string, probe: readonly ProbeRecord[]): Promise<Omit<AccuracyProbe, 'format_valid'>> {
  const { lexicalBaseline } = await import('./relevance/baseline.ts');
  const train = (await readPromptRecords(promptsDir, 'train')).map((r) => r.example);
  const fitted = lexicalBaseline(train, train);
  const metrics = classificationMetrics(probe.map((r) => ({ gold: r.example.label, predicted: fitted.predict(r.example) })));
  return { acc4: metrics.acc4, acc2: metrics.acc2, macro_f1: metrics.macroF1, count: probe.length };
}

/**
 * Greedy decoding of `records` and their Acc@4 / Acc@2 / macro-F1 / format validity: how sft reports
 * dev accuracy, and the RL stages "before" (the input checkpoint) and "after" on the same prompts.
 */
export async function greedyAccuracy(
  policy: Policy,
  records: readonly ProbeRecord[],
  options: { maxNewTokens: number; batchSize: number; rng: Rng; signal?: AbortSignal },
): Promise<AccuracyProbe> {
  const { greedyCompletions, fitsContext, promptIds } = await import('./judge/model.ts');
  records = records.filter((r) => fitsContext(policy, promptIds(policy.tokenizer, policy.format, r.messages).length, options.maxNewTokens));
  if (records.length === 0) return { acc4: 0, acc2: 0, macro_f1: 0, format_valid: 0, count: 0 };
  const completions = await greedyCompletions(policy, records, options);
  const gold = new Map(records.map((r) => [r.id, r.example.label]));
  const parsed = completions.map((c) => ({ parsed: parseCompletion(c.text), gold: gold.get(c.id) as Grade }));
  const pairs = parsed.map((x) => ({ gold: x.gold, predicted: x.parsed.label }));
  const metrics = classificationMetrics(pairs);
  return {
    acc4: metrics.acc4,
    acc2: metrics.acc2,
    macro_f1: metrics.macroF1,
    format_valid: parsed.filter((x) => x.parsed.formatOk).length / parsed.length,
    count: parsed.length,
    degeneracy: judgeDegeneracy(pairs),
  };
}

/** The before/after probe figures the RL stages log and put in their manifest. */
export function probeMetrics(before: AccuracyProbe, after: AccuracyProbe): Record<string, number> {
  return {
    dev_probe_prompts: after.count,
    dev_acc4_before: before.acc4,
    dev_acc4_after: after.acc4,
    dev_acc2_before: before.acc2,
    dev_acc2_after: after.acc2,
    dev_format_valid_before: before.format_valid,
    dev_format_valid_after: after.format_valid,
  };
}
