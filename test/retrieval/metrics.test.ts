import { describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import type { Grade } from '../../stages/lib/relevance/types.ts';
import {
  allScenarioHitrate,
  frequencySlices,
  ndcgAt,
  recallAt,
  reciprocalRank,
  retrievalFigures,
  retrievalFiguresWithIntervals,
  type RankedQuery,
} from '../../stages/lib/retrieval/metrics.ts';

const query = (queryId: string, retrieved: string[], grades: Record<string, Grade>): RankedQuery => ({
  queryId,
  query: queryId,
  retrieved,
  grades: new Map(Object.entries(grades)),
});

// Three hand-made scenarios (one per query). q1: relevant {a, b}; retrieves c (L1), a, x (unjudged), b.
// q2: relevant {e, f, g, h}; retrieves e, f, g, z. q3: nothing relevant.
const q1 = query('q1', ['c', 'a', 'x', 'b'], { a: 'L4', b: 'L3', c: 'L1', d: 'L2' });
const q2 = query('q2', ['e', 'f', 'g', 'z'], { e: 'L3', f: 'L4', g: 'L3', h: 'L3' });
const q3 = query('q3', ['i', 'j'], { i: 'L1', j: 'L2' });

describe('retrieval metrics on hand-derived cases', () => {
  it('Recall@3 is the share of a query’s relevant items in its first three', () => {
    expect(recallAt(q1, 3)).toBe(1 / 2); // a of {a, b}
    expect(recallAt(q2, 3)).toBe(3 / 4); // e, f, g of {e, f, g, h}
    expect(recallAt(q1, 4)).toBe(1);
    expect(recallAt(q3, 3)).toBeNull();
  });

  it('ASH@3 pools hits over scenarios: (1 + 3) / (2 + 4), not the mean of recalls (0.625)', () => {
    expect(allScenarioHitrate([q1, q2, q3], 3)).toBeCloseTo(4 / 6, 12);
    expect(retrievalFigures([q1, q2, q3], 3).recall).toBeCloseTo(0.625, 12);
    // An unordered set: the same three items in another order give the same ASH.
    const shuffled = query('q2', ['g', 'e', 'f', 'z'], Object.fromEntries(q2.grades));
    expect(allScenarioHitrate([q1, shuffled], 3)).toBeCloseTo(4 / 6, 12);
    expect(allScenarioHitrate([q3], 3)).toBeNull();
  });

  it('MRR: 1/2 for q1 (first relevant at rank 2), 1 for q2; q3 does not count', () => {
    expect(reciprocalRank(q1)).toBe(0.5);
    expect(reciprocalRank(q2)).toBe(1);
    expect(retrievalFigures([q1, q2, q3], 3).mrr).toBeCloseTo(0.75, 12);
  });

  it('NDCG@10 with gains 2^g − 1 (L4 7, L3 3, L2 1) and the ideal over every graded item', () => {
    // q1: DCG = 7/log2 3 + 3/log2 5; ideal = 7 + 3/log2 3 + 1/2.
    const dcg1 = 7 / Math.log2(3) + 3 / Math.log2(5);
    const ideal1 = 7 + 3 / Math.log2(3) + 1 / 2;
    expect(ndcgAt(q1, 10)).toBeCloseTo(dcg1 / ideal1, 12);
    expect(dcg1 / ideal1).toBeCloseTo(0.607757, 5);
    // q2: DCG = 3 + 7/log2 3 + 3/2; ideal = 7 + 3/log2 3 + 3/2 + 3/log2 5.
    expect(ndcgAt(q2, 10)).toBeCloseTo((3 + 7 / Math.log2(3) + 1.5) / (7 + 3 / Math.log2(3) + 1.5 + 3 / Math.log2(5)), 12);
    expect(ndcgAt(q3, 10)).toBeCloseTo(1 / Math.log2(3), 12); // j (L2, gain 1) at rank 2, where the ideal puts it first
  });

  it('bootstrap intervals stay within the per-query extremes and collapse on identical queries', () => {
    const figures = retrievalFiguresWithIntervals([q1, q2, q3], 3, new Rng(7).next.bind(new Rng(7)), { resamples: 200 });
    const [low, high] = figures.intervals.recall as [number, number];
    expect(low).toBeGreaterThanOrEqual(0.5);
    expect(high).toBeLessThanOrEqual(0.75);
    expect(low).toBeLessThan(high);
    const same = retrievalFiguresWithIntervals([q1, q1, q1], 3, () => 0.5, { resamples: 50 });
    expect(same.intervals.recall).toEqual([0.5, 0.5]);
    expect(same.intervals.ash).toEqual([0.5, 0.5]);
  });

  it('slices: the log tier, and new for a query absent from train', () => {
    expect(frequencySlices({ tier: 'tail', new: true })).toEqual(['tail', 'new']);
    expect(frequencySlices({ tier: 'head', new: false })).toEqual(['head']);
    expect(frequencySlices({ new: true })).toEqual(['new']);
  });
});
