/**
 * A greedy accuracy probe on dev prompts: how sft reports dev accuracy and the RL stages their
 * "before" (the input checkpoint) and "after", beside the lexical baseline on the same prompts.
 */
import { Rng } from '../../../pipeline/api.ts';
import { readPromptRecords } from '../artifacts/prompts.ts';
import { parseCompletion } from '../relevance/completion.ts';
import { classificationMetrics, judgeDegeneracy, type Degeneracy } from '../relevance/grade-agreement.ts';
import type { PromptRecord } from '../relevance/prompts.ts';
import { seededSample } from '../relevance/subsample.ts';
import type { Grade } from '../relevance/types.ts';
import type { Policy } from './model.ts';

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
 * The lexical baseline scored on `probe` (dev prompts): the figure a trained judge's dev probe is
 * compared with. It is fitted and its cut points tuned on the train split, as eval does when dev is
 * the split scored: tuned on the dev prompts it is scored on, it would be flattered.
 */
export async function baselineAccuracy(promptsDir: string, probe: readonly ProbeRecord[]): Promise<Omit<AccuracyProbe, 'format_valid'>> {
  const { lexicalBaseline } = await import('../relevance/baseline.ts');
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
  const { greedyCompletions, fitsContext, promptIds } = await import('./model.ts');
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
