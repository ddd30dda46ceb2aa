import { describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import { probeSample, seededSample } from '../../stages/lib/scoring.ts';

describe('seededSample (every "at most N" option: sample limit, cot limit, CumPT tuning set, probes)', () => {
  // 10 queries x 10 candidates, grouped by query as the splits are: the first 20 are queries 0 and 1.
  const records = Array.from({ length: 100 }, (_, i) => ({ query: Math.floor(i / 10), i }));

  it('draws across queries, not the first N, in the original order', () => {
    const chosen = seededSample(records, 20, new Rng(7, 'limit'));
    expect(chosen).toHaveLength(20);
    expect(new Set(chosen.map((r) => r.query)).size).toBeGreaterThan(2);
    expect(chosen.map((r) => r.i)).toEqual([...chosen.map((r) => r.i)].sort((a, b) => a - b));
  });

  it('is a pure function of the seed and stream', () => {
    const ids = (rng: Rng) => seededSample(records, 20, rng).map((r) => r.i);
    expect(ids(new Rng(7, 'limit'))).toEqual(ids(new Rng(7, 'limit')));
    expect(ids(new Rng(8, 'limit'))).not.toEqual(ids(new Rng(7, 'limit')));
  });

  it('returns everything for 0 or a count not below the length', () => {
    expect(seededSample(records, 0, new Rng(1))).toHaveLength(100);
    expect(seededSample(records, 100, new Rng(1))).toHaveLength(100);
  });

  it('is what the dev probe draws with the pipeline seed', () => {
    expect(probeSample(records, 12, 3)).toEqual(seededSample(records, 12, new Rng(3, 'dev-probe')));
  });
});
