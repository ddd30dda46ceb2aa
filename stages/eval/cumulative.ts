/**
 * Tuning TaoSR1's cumulative-probability partition (CumPT) for answer-first judges: with grade
 * probabilities p(L1..L4) read from the answer tokens, the predicted grade is the first grade g, from
 * the best down, whose cumulative probability p(L4) + ... + p(g) reaches the threshold τ
 * (`cumulativeGrade`, in grade-probs.ts beside the other readings of the answer tokens). A single τ
 * trades precision of the high grades against recall; it is tuned on dev for macro-F1.
 *
 * Written here because it is a dozen lines specific to this task; no library implements it.
 */
import { cumulativeGrade, DESCENDING_GRADES } from '../lib/grade-probs.ts';
import { classificationMetrics } from '../lib/metrics.ts';
import type { Grade } from '../lib/relevance/types.ts';

export { cumulativeGrade, normaliseGradeProbs } from '../lib/grade-probs.ts';

/**
 * The τ in (0, 1] with the best macro-F1 on the tuning examples (ties: the smallest). Predictions only change where τ
 * crosses an example's cumulative sum, so those sums are the only candidates worth trying.
 */
export function tuneCumulativeThreshold(dev: readonly { gold: Grade; probs: Record<Grade, number> }[]): { threshold: number; macroF1: number } {
  if (dev.length === 0) throw new Error('tuneCumulativeThreshold: no dev examples to tune the threshold on');
  const candidates = new Set<number>([1]);
  for (const { probs } of dev) {
    let cumulative = 0;
    for (const grade of DESCENDING_GRADES) {
      cumulative += probs[grade];
      if (cumulative > 0 && cumulative <= 1) candidates.add(cumulative);
    }
  }
  let best = { threshold: 1, macroF1: -1 };
  for (const threshold of [...candidates].sort((a, b) => a - b)) {
    const { macroF1 } = classificationMetrics(dev.map((e) => ({ gold: e.gold, predicted: cumulativeGrade(e.probs, threshold) })));
    if (macroF1 > best.macroF1) best = { threshold, macroF1 };
  }
  return best;
}
