/**
 * What eval writes to metrics.json (`EvalMetrics`) and what it computes per checkpoint, apart from
 * the stage so fragment.ts (the report) reads the type without importing the stage that imports it.
 */
import type { Degeneracy } from '../lib/relevance/grade-agreement.ts';
import type { Split } from '../lib/relevance/types.ts';
import type { Delivered, NestedEstimate } from './delivery.ts';
import type { Prediction } from './predictions.ts';
import type { ComparisonRow, ModelSummary } from './summary.ts';

export interface CheckpointResult {
  predictions: Prediction[];
  /** answer_first checkpoints: the cumulative threshold, its macro-F1 on the examples it was tuned on, and their split (train when dev is scored). */
  threshold?: { threshold: number; tuningMacroF1: number; tuningExamples: number; tuningSplit: Split };
  promptTooLong: number;
}

export interface EvalMetrics {
  /** The split evaluated. */
  split: 'test' | 'dev';
  examples: number;
  checkpoints: Record<string, ModelSummary & { threshold?: CheckpointResult['threshold']; promptTooLong: number }>;
  baseline: (ModelSummary & { thresholds: number[]; tuningMacroF1: number; tuningSplit: Split }) | null;
  /** The learned lexical baseline (stages/lib/relevance/learned-baseline.ts), when evaluated. */
  learnedBaseline?: ModelSummary & { trainMacroF1: number };
  /** With lexical_pool: each checkpoint (and the ensemble) pooled with the learned lexical baseline, by row name (`<checkpoint>+lexical`). */
  pooled?: Record<string, ModelSummary & { checkpoint: string; weight: number }>;
  /** With `ensemble`: the members' pooled grade probabilities, read at their median. */
  ensemble?: ModelSummary & { members: string[] };
  /**
   * The judge this config delivers, chosen on dev by cross-fitting (delivery.ts), with its dev
   * figures; `summary` is its row on the split evaluated (cross-fitted when that is dev).
   */
  delivered?: Delivered & {
    summary: ModelSummary;
    /** The selection procedure's own dev figures by nested cross-validation (absent with fewer than 2 dev queries). */
    nested?: NestedEstimate & { summary: ModelSummary; degeneracy: Degeneracy };
  };
  /** Whether the delivered judge is degenerate (judgeDegeneracy on the split evaluated). */
  degenerate?: boolean;
  degeneracy?: Degeneracy;
  comparison: ComparisonRow[];
}
