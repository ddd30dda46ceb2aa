import { describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import { buildHnsw, DEFAULT_HNSW, recallAgainstExact, searchExact, searchHnsw, type VectorMatrix } from '../../stages/lib/retrieval/ann.ts';
import { reciprocalRankFusion } from '../../stages/lib/retrieval/fusion.ts';

function randomMatrix(rows: number, dimensions: number, rng: Rng): VectorMatrix {
  return { rows, dimensions, data: Float32Array.from({ length: rows * dimensions }, () => rng.normal()) };
}

/** Cosine top-k by brute force, written out here as the independent reference. */
function bruteForce(items: VectorMatrix, query: Float32Array, k: number): number[] {
  const d = items.dimensions;
  const norm = (v: Float32Array, at: number) => Math.sqrt(Array.from({ length: d }, (_, j) => (v[at + j] as number) ** 2).reduce((a, b) => a + b, 0));
  const qn = norm(query, 0);
  const scores = Array.from({ length: items.rows }, (_, i) => {
    let dot = 0;
    for (let j = 0; j < d; j++) dot += (items.data[i * d + j] as number) * (query[j] as number);
    return { i, cos: dot / (norm(items.data, i * d) * qn) };
  });
  return scores.sort((a, b) => b.cos - a.cos).slice(0, k).map((s) => s.i);
}

describe('dense search', () => {
  const rng = new Rng(11);
  const items = randomMatrix(3000, 24, rng);
  const queries = randomMatrix(100, 24, rng);

  it('exact search is the brute-force cosine top k', async () => {
    const exact = await searchExact(items, queries, 10);
    for (const q of [0, 17, 99]) {
      const reference = bruteForce(items, queries.data.subarray(q * 24, (q + 1) * 24), 10);
      // Near-ties may swap places: compare as sets.
      expect(new Set(exact[q]!.map((n) => n.row))).toEqual(new Set(reference));
    }
  });

  it('HNSW finds at least 95 % of the exact top 10 on random vectors, and a tiny search budget finds fewer', async () => {
    const exact = await searchExact(items, queries, 10);
    const index = await buildHnsw(items, DEFAULT_HNSW);
    const recall = recallAgainstExact(searchHnsw(index, queries, 10), exact, 10);
    expect(recall).toBeGreaterThanOrEqual(0.95);
    // The measurement can fail: a graph of degree 2 searched with one candidate misses many.
    const poor = await buildHnsw(items, { connectivity: 2, expansionAdd: 2, expansionSearch: 1 });
    expect(recallAgainstExact(searchHnsw(poor, queries, 10), exact, 10)).toBeLessThan(recall);
  });

  it('recall against exact counts the share of each exact top k found', () => {
    const n = (row: number) => ({ row, score: 0 });
    expect(recallAgainstExact([[n(1), n(2)], [n(5), n(9)]], [[n(1), n(3)], [n(5), n(9)]], 2)).toBe(0.75);
  });
});

describe('reciprocal-rank fusion', () => {
  it('sums 1/(60 + rank) over the rankings', () => {
    // a: 1/61 + 1/63; b: 1/62 + 1/61; c: 1/63; d: 1/62. So b > a > d > c.
    expect(reciprocalRankFusion([['a', 'b', 'c'], ['b', 'd', 'a']])).toEqual(['b', 'a', 'd', 'c']);
  });
});
