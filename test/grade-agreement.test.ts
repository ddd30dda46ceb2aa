import { describe, expect, it } from 'vitest';
import { bootstrapIntervals, classificationMetrics, quadraticWeightedKappa } from '../stages/lib/relevance/grade-agreement.ts';
import { Rng } from '../pipeline/rng.ts';
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

describe('quadraticWeightedKappa', () => {
  it('matches the value derived by hand, an unanswered prediction scored as the farthest grade', () => {
    // Grades as indices L1=0 .. L4=3, weights (i-j)^2/9. Pairs (gold, predicted):
    // (3,3) (3,2) (2,2) (1,0) (0,0) and (0, none -> 3, the farthest from L1).
    // Observed weighted disagreement: 1/9 + 1/9 + 9/9 = 11/9.
    // Gold histogram [2,1,1,2], predicted [2,0,2,2]; sum (i-j)^2 g_i p_j = 52 + 12 + 10 + 40 = 114,
    // so expected = 114 / (9 * 6) = 19/9, and kappa = 1 - (11/9) / (19/9) = 8/19.
    const kappa = quadraticWeightedKappa([pair('L4', 'L4'), pair('L4', 'L3'), pair('L3', 'L3'), pair('L2', 'L1'), pair('L1', 'L1'), pair('L1', undefined)]);
    expect(kappa).toBeCloseTo(8 / 19, 12);
    expect(classificationMetrics([pair('L4', 'L4'), pair('L4', 'L3'), pair('L3', 'L3'), pair('L2', 'L1'), pair('L1', 'L1'), pair('L1', undefined)]).qwk).toBeCloseTo(8 / 19, 12);
  });

  it('is 1 for perfect agreement, -1 for the mirror image of two grades, null when undefined', () => {
    expect(quadraticWeightedKappa([pair('L1', 'L1'), pair('L2', 'L2'), pair('L4', 'L4')])).toBeCloseTo(1, 12);
    // Gold L1, L4 predicted L4, L1: observed 2*1 = 2; expected sum over i,j of w*g*p/n = (1*1*1 + 1*1*1)/2 = 1 -> 1 - 2 = -1.
    expect(quadraticWeightedKappa([pair('L1', 'L4'), pair('L4', 'L1')])).toBeCloseTo(-1, 12);
    expect(quadraticWeightedKappa([pair('L3', 'L3'), pair('L3', 'L3')])).toBeNull();
  });
});

describe('bootstrapIntervals', () => {
  it('takes interpolated percentiles of the resampled figures', () => {
    // Two examples, the first right, the second wrong. The uniforms pick indices floor(u * 2):
    // resamples [0,0] [0,1] [1,1] [1,0] -> Acc@4 1, 0.5, 0, 0.5; sorted [0, 0.5, 0.5, 1].
    // At level 0.5 the quantiles 0.25 and 0.75 sit at positions 0.75 and 2.25:
    // 0 + 0.75 * 0.5 = 0.375 and 0.5 + 0.25 * 0.5 = 0.625.
    const uniforms = [0.1, 0.1, 0.1, 0.6, 0.6, 0.6, 0.6, 0.1];
    let at = 0;
    const intervals = bootstrapIntervals([pair('L4', 'L4'), pair('L1', 'L3')], () => uniforms[at++]!, { resamples: 4, level: 0.5 });
    expect(intervals.acc4[0]).toBeCloseTo(0.375, 12);
    expect(intervals.acc4[1]).toBeCloseTo(0.625, 12);
    expect(at).toBe(8);
  });

  it('gives an Acc@4 interval about as wide as the normal approximation says', () => {
    // 300 of 400 right: p = 0.75, se = sqrt(0.75 * 0.25 / 400) = 0.02165; a 95% interval is about
    // 2 * 1.96 * 0.02165 = 0.0849 wide and contains 0.75.
    const pairs = Array.from({ length: 400 }, (_, i) => pair('L4', i < 300 ? 'L4' : 'L1'));
    const rng = new Rng(7, 'bootstrap');
    const { acc4, resamples, level } = bootstrapIntervals(pairs, () => rng.next());
    expect([resamples, level]).toEqual([1000, 0.95]);
    expect(acc4[0]).toBeLessThan(0.75);
    expect(acc4[1]).toBeGreaterThan(0.75);
    expect(acc4[1] - acc4[0]).toBeGreaterThan(0.07);
    expect(acc4[1] - acc4[0]).toBeLessThan(0.1);
  });
});
