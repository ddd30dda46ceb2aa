import { describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import { probeSample } from '../../stages/lib/judge/accuracy-probe.ts';
import { seededSample, stratifiedSample } from '../../stages/lib/relevance/subsample.ts';

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

describe('stratifiedSample (eval\'s limit with stratify: a capped dev split keeps its grade shares)', () => {
  // 1,000 pairs grouped by query, 62 / 23 / 12 / 3 % L4 / L3 / L1 / L2 (the skewed public set of issue 30).
  const grades = [...Array(620).fill('L4'), ...Array(230).fill('L3'), ...Array(120).fill('L1'), ...Array(30).fill('L2')] as string[];
  const records = new Rng(5, 'order').shuffle(grades.map((grade, i) => ({ grade, i })));
  const count = (rows: readonly { grade: string }[], grade: string) => rows.filter((r) => r.grade === grade).length;

  it('gives each grade its proportional share, remainders to the largest fractions', () => {
    // 400 of 1,000: 248 / 92 / 48 / 12 exactly (0.4 x each count, all whole).
    const chosen = stratifiedSample(records, 400, (r) => r.grade, new Rng(7, 'dev-sample'));
    expect(chosen).toHaveLength(400);
    expect([count(chosen, 'L4'), count(chosen, 'L3'), count(chosen, 'L1'), count(chosen, 'L2')]).toEqual([248, 92, 48, 12]);
    // 7 of 1,000: quotas 4.34 / 1.61 / 0.84 / 0.21 -> floors 4 / 1 / 0 / 0, the two seats left to
    // the largest remainders (L1's 0.84, L3's 0.61): 4 / 2 / 1 / 0.
    const seven = stratifiedSample(records, 7, (r) => r.grade, new Rng(7, 'dev-sample'));
    expect([count(seven, 'L4'), count(seven, 'L3'), count(seven, 'L1'), count(seven, 'L2')]).toEqual([4, 2, 1, 0]);
  });

  it('draws distinct records in their original order, a pure function of the seed', () => {
    const ids = (rng: Rng) => stratifiedSample(records, 100, (r) => r.grade, rng).map((r) => r.i);
    const chosen = ids(new Rng(7, 'dev-sample'));
    expect(new Set(chosen).size).toBe(100);
    const positions = chosen.map((i) => records.findIndex((r) => r.i === i));
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    expect(ids(new Rng(7, 'dev-sample'))).toEqual(chosen);
    expect(ids(new Rng(8, 'dev-sample'))).not.toEqual(chosen);
  });

  it('returns everything for 0 or a count not below the length', () => {
    expect(stratifiedSample(records, 0, (r) => r.grade, new Rng(1))).toHaveLength(1000);
    expect(stratifiedSample(records, 1000, (r) => r.grade, new Rng(1))).toHaveLength(1000);
  });
});
