/**
 * Hybrid retrieval: reciprocal-rank fusion (Cormack, Clarke & Büttcher 2009, "Reciprocal rank
 * fusion outperforms Condorcet and individual rank learning methods", SIGIR, eq. 1):
 *   RRFscore(d) = Σ_{r ∈ R} 1 / (k + r(d)),
 * r(d) the 1-based rank of d in ranking r, k = 60 as in the paper. Ranks rather than scores are
 * fused because BM25's scores and cosine similarities live on unrelated scales.
 */
export const RRF_K = 60;

/** Fuses rankings (best first) of item keys; ties keep the order of first appearance. */
export function reciprocalRankFusion(rankings: readonly (readonly string[])[], k = RRF_K): string[] {
  const scores = new Map<string, number>();
  for (const ranking of rankings) ranking.forEach((key, rank) => scores.set(key, (scores.get(key) ?? 0) + 1 / (k + rank + 1)));
  return [...scores].sort((a, b) => b[1] - a[1]).map(([key]) => key);
}
