import { describe, expect, it } from 'vitest';
import { chooseFusionWeight, hybridRanking, weightedReciprocalRankFusion } from '../../stages/lib/retrieval/fusion.ts';
import { meanNdcg10 } from '../../stages/lib/retrieval/metrics.ts';
import type { Grade } from '../../stages/lib/relevance/types.ts';

describe('weighted reciprocal-rank fusion', () => {
  const lexical = ['a', 'b', 'c'];
  const dense = ['d', 'a', 'e'];

  it('a small dense weight keeps BM25’s order and only adds the dense run’s items after it', () => {
    // w = 0.2, k = 60: a 0.8/61 + 0.2/62 = 0.01634; b 0.8/62 = 0.01290; c 0.8/63 = 0.01270;
    // d 0.2/61 = 0.00328; e 0.2/63 = 0.00317.
    expect(hybridRanking(lexical, dense, 0.2)).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('equal weights put the dense run’s first item above BM25’s second', () => {
    // w = 0.5: a 0.01626; d 0.5/61 = 0.00820 > b 0.5/62 = 0.00806 > c = e 0.5/63 (tie: c seen first).
    expect(hybridRanking(lexical, dense, 0.5)).toEqual(['a', 'd', 'b', 'c', 'e']);
    expect(weightedReciprocalRankFusion([{ ranking: lexical, weight: 1 }, { ranking: dense, weight: 1 }])).toEqual(['a', 'd', 'b', 'c', 'e']);
  });

  it('weight 0 is BM25 alone', () => {
    expect(hybridRanking(lexical, dense, 0)).toEqual(lexical);
  });
});

describe('choosing the dense weight', () => {
  it('takes the best figure, and the earlier candidate on a tie', () => {
    const figures: Record<number, number> = { 0: 0.5, 0.1: 0.6, 0.2: 0.6 };
    expect(chooseFusionWeight([0, 0.1, 0.2], (w) => figures[w] as number).weight).toBe(0.1);
    expect(chooseFusionWeight([0, 0.5], () => 0.3).weight).toBe(0);
  });

  const grades = (entries: [string, Grade][]) => new Map(entries);
  const tuneOn = (dense: string[][]) => {
    const queries = [
      { queryId: 'q1', query: 'q1', grades: grades([['a', 'L4'], ['x', 'L1']]), lexical: ['a', 'b', 'c'] },
      { queryId: 'q2', query: 'q2', grades: grades([['m', 'L4'], ['n', 'L3']]), lexical: ['m', 'o', 'p'] },
    ];
    return chooseFusionWeight([0, 0.2, 0.5], (w) => meanNdcg10(queries.map((q, i) => ({ ...q, retrieved: hybridRanking(q.lexical, dense[i] as string[], w) }))) as number);
  };

  it('a dense run that only brings irrelevant items keeps BM25 alone (weight 0)', () => {
    // At 0.5 the dense run's x and z reach rank 2 and push the relevant n (absent from BM25) nowhere: NDCG falls.
    expect(tuneOn([['x', 'y', 'a'], ['z', 'm', 'q']]).weight).toBe(0);
  });

  it('a dense run that finds what BM25 missed earns a weight', () => {
    // q2's n (L3) is missing from BM25's list; the dense run ranks it first. At 0.2 n lands 4th
    // (0.2/61 below every BM25 item); at 0.5 it is 3rd (o, in both lists, scores 0.5/62 + 0.5/63
    // above n's 0.5/61): q2's NDCG rises from (7 + 3/log2 5) / (7 + 3/log2 3) = 0.932 to
    // (7 + 3/log2 4) / (7 + 3/log2 3) = 0.956; q1 stays 1 (its dense run is BM25's).
    const chosen = tuneOn([['a', 'b', 'c'], ['n', 'm', 'o']]);
    expect(chosen.weight).toBe(0.5);
    expect(chosen.figures['0.2']).toBeCloseTo((1 + (7 + 3 / Math.log2(5)) / (7 + 3 / Math.log2(3))) / 2, 10);
    expect(chosen.figures['0.5']).toBeCloseTo((1 + (7 + 3 / 2) / (7 + 3 / Math.log2(3))) / 2, 10);
    expect(chosen.figures['0']).toBeCloseTo((1 + 7 / (7 + 3 / Math.log2(3))) / 2, 10);
  });
});
