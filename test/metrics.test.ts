import { describe, expect, it } from 'vitest';
import { classificationMetrics } from '../stages/lib/metrics.ts';
import type { Grade } from '../stages/lib/relevance/types.ts';

const pair = (gold: Grade, predicted: Grade | undefined) => ({ gold, predicted });

describe('classificationMetrics', () => {
  // gold:      L4 L4 L3 L2 L1 L1
  // predicted: L4 L3 L3 L1 L1 (none)
  const metrics = classificationMetrics([
    pair('L4', 'L4'),
    pair('L4', 'L3'),
    pair('L3', 'L3'),
    pair('L2', 'L1'),
    pair('L1', 'L1'),
    pair('L1', undefined),
  ]);

  it('Acc@4 counts exact grades; Acc@2 counts the relevant/irrelevant side; no answer is wrong', () => {
    expect(metrics.acc4).toBeCloseTo(3 / 6, 12); // rows 1, 3, 5
    expect(metrics.acc2).toBeCloseTo(5 / 6, 12); // all but the unanswered row
    expect(metrics.unanswered).toBe(1);
  });

  it('per-grade scores and macro-F1 follow from the confusion matrix', () => {
    // L4: tp 1, predicted-as 1, support 2 -> P 1, R 0.5, F1 2/3.
    // L3: tp 1, predicted-as 2, support 1 -> P 0.5, R 1, F1 2/3.
    // L2: tp 0 -> F1 0.  L1: tp 1, predicted-as 2, support 2 -> P 0.5, R 0.5, F1 0.5.
    expect(metrics.perGrade.L4).toEqual({ precision: 1, recall: 0.5, f1: 2 / 3, support: 2 });
    expect(metrics.perGrade.L3.f1).toBeCloseTo(2 / 3, 12);
    expect(metrics.perGrade.L2.f1).toBe(0);
    expect(metrics.perGrade.L1).toEqual({ precision: 0.5, recall: 0.5, f1: 0.5, support: 2 });
    expect(metrics.macroF1).toBeCloseTo((2 / 3 + 2 / 3 + 0 + 0.5) / 4, 12);
    expect(metrics.confusion.L1).toEqual({ L1: 1, L2: 0, L3: 0, L4: 0, none: 1 });
  });

  it('averages macro-F1 over the grades the gold labels contain', () => {
    const binaryData = classificationMetrics([pair('L4', 'L4'), pair('L1', 'L1'), pair('L1', 'L4')]);
    // L4: P 0.5 R 1 F1 2/3; L1: P 1 R 0.5 F1 2/3; L2 and L3 never occur in gold.
    expect(binaryData.macroF1).toBeCloseTo(2 / 3, 12);
  });
});
