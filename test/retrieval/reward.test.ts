import { describe, expect, it } from 'vitest';
import { bestRelevantRank, retrievalReward } from '../../stages/lib/retrieval/reward.ts';
import type { VectorMatrix } from '../../stages/lib/retrieval/ann.ts';

// Four unit items in 2-d at 0°, 60°, 90° and 180°; the query at 45°.
const deg = (d: number) => [Math.cos((d * Math.PI) / 180), Math.sin((d * Math.PI) / 180)];
const items: VectorMatrix = { rows: 4, dimensions: 2, data: Float32Array.from([0, 60, 90, 180].flatMap(deg)) };
const query = Float32Array.from(deg(45));

describe('the retrieval reward of LREM stage 2 on a hand-made catalog', () => {
  // Cosines with the 45° query: item 0 cos 45° = 0.707, item 1 cos 15° = 0.966, item 2 cos 45° = 0.707,
  // item 3 cos 135° = −0.707. Ranks: 1 first, then 0 and 2 tied, then 3.
  it('rank of the best relevant item: 1 + the items strictly above it', () => {
    expect(bestRelevantRank(query, items, [1])).toBe(1);
    expect(bestRelevantRank(query, items, [3])).toBe(4);
    expect(bestRelevantRank(query, items, [3, 2])).toBe(2); // item 2 is the better one; its tie with 0 does not push it down
    expect(bestRelevantRank(query, items, [])).toBe(Number.POSITIVE_INFINITY);
  });

  it('rank reward 1/r⁺; hit@K reward 1 when r⁺ ≤ K; 0 without a relevant item', () => {
    expect(retrievalReward(query, items, [3], { kind: 'rank', k: 2 })).toBeCloseTo(0.25, 12);
    expect(retrievalReward(query, items, [0], { kind: 'rank', k: 2 })).toBeCloseTo(0.5, 12);
    expect(retrievalReward(query, items, [0], { kind: 'hit', k: 2 })).toBe(1);
    expect(retrievalReward(query, items, [3], { kind: 'hit', k: 2 })).toBe(0);
    expect(retrievalReward(query, items, [], { kind: 'rank', k: 2 })).toBe(0);
  });
});
