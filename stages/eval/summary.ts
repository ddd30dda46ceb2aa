/**
 * From predictions to the figures the papers report: the classification metrics (stages/lib/relevance/grade-agreement.ts),
 * slices by capability, difficulty and source (RAIR-style), and the completion-level rates: format
 * validity, step-verification rate, rule adherence, mean completion length and latency.
 * A rate whose denominator is empty is null (JSON has no NaN), never 0.
 */
import { STEP_NAMES } from '../lib/relevance/completion.ts';
import { bootstrapIntervals, classificationMetrics, judgeDegeneracy, mean, type ClassificationMetrics, type Degeneracy, type MetricIntervals } from '../lib/relevance/grade-agreement.ts';
import type { Prediction } from './predictions.ts';

export interface SliceScores {
  count: number;
  acc2: number;
  acc4: number;
  macroF1: number;
}

export interface ModelSummary extends ClassificationMetrics {
  /** Share of completions with no format error. */
  formatValidity: number | null;
  /** Mean share of the five reasoning steps that verify against the reference. */
  stepVerificationRate: number | null;
  /** Of the examples where at least one rule fires, the share whose completion names every firing rule. */
  ruleAdherence: number | null;
  ruleExamples: number;
  meanCompletionTokens: number | null;
  meanLatencyMs: number;
  /** 95 % percentile-bootstrap intervals of Acc@2, Acc@4, macro-F1 and QWK over the examples. */
  intervals: MetricIntervals;
  /**
   * Whether this model has collapsed onto one grade (judgeDegeneracy), for every row, not only the
   * delivered judge: a degenerate SFT, DPO or GRPO checkpoint feeding an ensemble or a pool is what a
   * user must see before trusting the stage that made it.
   */
  degeneracy: Degeneracy;
  slices: { capability: Record<string, SliceScores>; difficulty: Record<string, SliceScores>; source: Record<string, SliceScores> };
}

const meanOrNull = (values: readonly number[]): number | null => (values.length === 0 ? null : mean(values));

function scores(predictions: readonly Prediction[]): SliceScores {
  const { count, acc2, acc4, macroF1 } = classificationMetrics(predictions.map((p) => ({ gold: p.gold, predicted: p.predicted ?? undefined })));
  return { count, acc2, acc4, macroF1 };
}

/** Groups by every key an example has (an example with two capabilities is in both slices). */
function sliceBy(predictions: readonly Prediction[], keys: (p: Prediction) => readonly string[]): Record<string, SliceScores> {
  const groups = new Map<string, Prediction[]>();
  for (const p of predictions) for (const key of keys(p)) groups.set(key, [...(groups.get(key) ?? []), p]);
  return Object.fromEntries([...groups.keys()].sort().map((key) => [key, scores(groups.get(key) as Prediction[])]));
}

/** `random` draws the bootstrap resamples: pass a seeded stream so the intervals are reproducible. */
export function summarise(predictions: readonly Prediction[], random: () => number): ModelSummary {
  const withCompletion = predictions.filter((p) => p.formatOk !== null);
  const ruled = withCompletion.filter((p) => p.rulesNamed !== null);
  const graded = predictions.map((p) => ({ gold: p.gold, predicted: p.predicted ?? undefined }));
  return {
    ...classificationMetrics(graded),
    intervals: bootstrapIntervals(graded, random),
    degeneracy: judgeDegeneracy(graded),
    formatValidity: meanOrNull(withCompletion.map((p) => (p.formatOk ? 1 : 0))),
    stepVerificationRate: meanOrNull(withCompletion.map((p) => (p.stepsVerified ?? 0) / STEP_NAMES.length)),
    ruleAdherence: meanOrNull(ruled.map((p) => (p.rulesNamed ? 1 : 0))),
    ruleExamples: ruled.length,
    meanCompletionTokens: meanOrNull(withCompletion.map((p) => p.completionTokens ?? 0)),
    meanLatencyMs: meanOrNull(predictions.map((p) => p.latencyMs)) ?? 0,
    slices: {
      capability: sliceBy(predictions, (p) => p.capabilities),
      difficulty: sliceBy(predictions, (p) => [p.difficulty]),
      source: sliceBy(predictions, (p) => [p.source]),
    },
  };
}

/**
 * One row of the ablation-style table: every checkpoint of the run (each followed by its row pooled
 * with the lexical model, under `lexical_pool`), the ensemble (and its pooled row), then distilled
 * models, then the baselines.
 */
export interface ComparisonRow {
  model: string;
  kind: 'checkpoint' | 'ensemble' | 'pooled' | 'delivered' | 'distilled' | 'baseline';
  count: number;
  acc2: number;
  acc4: number;
  macroF1: number;
  qwk: number | null;
  intervals: MetricIntervals;
  degenerate: boolean;
  formatValidity: number | null;
  stepVerificationRate: number | null;
  ruleAdherence: number | null;
  meanCompletionTokens: number | null;
  meanLatencyMs: number;
}

export function comparisonRow(model: string, kind: ComparisonRow['kind'], s: ModelSummary): ComparisonRow {
  return {
    model,
    kind,
    count: s.count,
    acc2: s.acc2,
    acc4: s.acc4,
    macroF1: s.macroF1,
    qwk: s.qwk,
    intervals: s.intervals,
    degenerate: s.degeneracy.degenerate,
    formatValidity: s.formatValidity,
    stepVerificationRate: s.stepVerificationRate,
    ruleAdherence: s.ruleAdherence,
    meanCompletionTokens: s.meanCompletionTokens,
    meanLatencyMs: s.meanLatencyMs,
  };
}
