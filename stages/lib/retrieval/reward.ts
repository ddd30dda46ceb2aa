/**
 * The retrieval reward of LREM's second stage: how well an embedding, read after the analysis the
 * model wrote, retrieves the query's judged-relevant items from the whole catalog. The reward is
 * the outcome a GRPO group is normalised over (stages/embed/grpo.ts):
 *   rank:  1 / r⁺, r⁺ the 1-based rank of the best-ranked relevant item among all items by cosine
 *          (the reciprocal rank: 1 when a relevant item comes first, falling as it sinks)
 *   hit:   1 when r⁺ ≤ K, else 0 (hit@K)
 * Exact over the catalog rather than through the HNSW: the reward must not carry the index's
 * misses, and a train step scores a few dozen vectors.
 */
import type { VectorMatrix } from './ann.ts';

export type RetrievalRewardKind = 'rank' | 'hit';

/**
 * r⁺ for an L2-normalised `query` against normalised `items`: 1 + the items scoring strictly
 * above the best relevant item (a tie does not push the relevant item down). Infinity without a
 * relevant row.
 */
export function bestRelevantRank(query: Float32Array, items: VectorMatrix, relevantRows: readonly number[]): number {
  if (relevantRows.length === 0) return Number.POSITIVE_INFINITY;
  const d = items.dimensions;
  const scores = new Float32Array(items.rows);
  for (let i = 0; i < items.rows; i++) {
    let dot = 0;
    for (let j = 0; j < d; j++) dot += (items.data[i * d + j] as number) * (query[j] as number);
    scores[i] = dot;
  }
  const best = Math.max(...relevantRows.map((row) => scores[row] as number));
  let above = 0;
  for (const score of scores) if (score > best) above++;
  return above + 1;
}

export function retrievalReward(query: Float32Array, items: VectorMatrix, relevantRows: readonly number[], reward: { kind: RetrievalRewardKind; k: number }): number {
  const rank = bestRelevantRank(query, items, relevantRows);
  if (!Number.isFinite(rank)) return 0;
  return reward.kind === 'rank' ? 1 / rank : rank <= reward.k ? 1 : 0;
}
