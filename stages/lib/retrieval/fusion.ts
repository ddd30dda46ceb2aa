/**
 * Hybrid retrieval: reciprocal-rank fusion (Cormack, Clarke & Büttcher 2009, "Reciprocal rank
 * fusion outperforms Condorcet and individual rank learning methods", SIGIR, eq. 1):
 *   RRFscore(d) = Σ_{r ∈ R} w_r / (k + r(d)),
 * r(d) the 1-based rank of d in ranking r, k = 60 as in the paper, w_r = 1 there. Ranks rather than
 * scores are fused because BM25's scores and cosine similarities live on unrelated scales.
 *
 * The weighted form (w_r ≠ 1; Bruch, Gai & Ingber 2023, "An analysis of fusion functions for hybrid
 * retrieval", ACM TOIS; they tune the weight of the lexical and the dense run) lets a weak dense run nudge
 * BM25's order without dragging its good items down: with equal weights an item the dense run ranks
 * first and BM25 misses scores as much as BM25's first. The dense weight is chosen on judged queries
 * that are not scored (dev, never test: `chooseFusionWeight`), and 0 (BM25 alone) is a candidate, so
 * the hybrid falls back to BM25 where the dense run does not help.
 */
export const RRF_K = 60;

/** Fuses rankings (best first) of item keys with weight 1 each; ties keep the order of first appearance. */
export function reciprocalRankFusion(rankings: readonly (readonly string[])[], k = RRF_K): string[] {
  return weightedReciprocalRankFusion(rankings.map((ranking) => ({ ranking, weight: 1 })), k);
}

/** Σ_r w_r / (k + rank_r(d)) over the rankings; ties keep the order of first appearance. */
export function weightedReciprocalRankFusion(rankings: readonly { ranking: readonly string[]; weight: number }[], k = RRF_K): string[] {
  const scores = new Map<string, number>();
  for (const { ranking, weight } of rankings) {
    ranking.forEach((key, rank) => scores.set(key, (scores.get(key) ?? 0) + weight / (k + rank + 1)));
  }
  return [...scores].sort((a, b) => b[1] - a[1]).map(([key]) => key);
}

/** BM25's and a dense run's rankings fused with `denseWeight` on the dense run and 1 − denseWeight on BM25. */
export function hybridRanking(lexical: readonly string[], dense: readonly string[], denseWeight: number, k = RRF_K): string[] {
  if (denseWeight === 0) return [...lexical];
  return weightedReciprocalRankFusion(
    [
      { ranking: lexical, weight: 1 - denseWeight },
      { ranking: dense, weight: denseWeight },
    ],
    k,
  );
}

/**
 * The candidate weight with the best figure (`figureAt`: e.g. mean NDCG@10 on dev); on a tie the
 * earlier candidate, so candidates listed from 0 up keep BM25's ranking unless the dense run helps.
 */
export function chooseFusionWeight(candidates: readonly number[], figureAt: (weight: number) => number): { weight: number; figure: number; figures: Record<string, number> } {
  if (candidates.length === 0) throw new Error('chooseFusionWeight: no candidate weights');
  const figures: Record<string, number> = {};
  let best = { weight: candidates[0] as number, figure: Number.NEGATIVE_INFINITY };
  for (const weight of candidates) {
    const figure = figureAt(weight);
    figures[String(weight)] = figure;
    if (figure > best.figure + 1e-12) best = { weight, figure };
  }
  return { ...best, figures };
}
