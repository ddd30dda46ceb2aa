import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { holdOutQueries, inRlPool, poolSampleSize, rankByUncertainty, restrictToRlPool, sampledGradeEntropy } from '../../stages/lib/rl/pool.ts';
import { writeRlPool } from '../../stages/lib/artifacts/checkpoint.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'rl-pool-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const train = ['Phone Case', 'phone case', 'speaker', 'usb cable', 'hdmi', 'laptop bag', 'mouse', 'keyboard', 'monitor', 'tripod', 'lamp'].map((query) => ({ query }));

describe('the RL pool', () => {
  it('holds out a seeded share of the distinct train queries, whole queries only', () => {
    // 10 distinct normalised queries ("Phone Case" = "phone case"); 0.2 of 10 = 2.
    const pool = holdOutQueries(train, 0.2, 7);
    expect(pool.queries).toHaveLength(2);
    expect(holdOutQueries(train, 0.2, 7)).toEqual(pool);
    expect(holdOutQueries(train, 0.2, 8).queries).not.toEqual(pool.queries);
    // Both spellings of a query fall on the same side.
    expect(inRlPool(pool, { query: 'Phone Case' })).toBe(inRlPool(pool, { query: 'phone case' }));
    expect(train.filter((e) => inRlPool(pool, e)).length).toBeGreaterThanOrEqual(2);
    expect(holdOutQueries(train, 0, 7).queries).toEqual([]);
    expect(() => holdOutQueries(train.slice(2, 4), 0.9, 7)).toThrow('would hold out all 2 train queries');
  });

  it('restricts RL prompts to the pool a checkpoint carries, and to nothing less when it carries none', async () => {
    const records = train.map((example, i) => ({ id: `r${i}`, example }));
    expect(await restrictToRlPool(dir, records)).toBe(records);
    await writeRlPool(dir, { fraction: 0.1, queries: ['speaker', 'tripod'] });
    expect((await restrictToRlPool(dir, records)).map((r) => r.id)).toEqual(['r2', 'r9']);
  });

  it('samples a share of the pool, at least one prompt, capped by limit', () => {
    // 0.25 of 194 = 48.5, rounded up to 49; limit 32 caps it; 0.01 of 20 = 0.2 still gives one.
    expect(poolSampleSize(194, 0.25, 0)).toBe(49);
    expect(poolSampleSize(194, 0.25, 32)).toBe(32);
    expect(poolSampleSize(194, 1, 0)).toBe(194);
    expect(poolSampleSize(20, 0.01, 0)).toBe(1);
    expect(poolSampleSize(20, 1, 96)).toBe(20);
  });

  it('ranks prompts by the entropy of their sampled grades, most uncertain first', () => {
    // [L1, L1, L4, null]: p = (1/2, 1/4, 1/4), H = -(0.5 ln 0.5 + 2 * 0.25 ln 0.25) = 0.3466 + 0.6931 = 1.0397.
    expect(sampledGradeEntropy(['L1', 'L1', 'L4', null])).toBeCloseTo(1.0397, 4);
    expect(sampledGradeEntropy(['L2', 'L2'])).toBe(0);
    const prompt = (id: string, labels: ('L1' | 'L2' | 'L3' | 'L4' | null)[]) => ({ id, samples: labels.map((label) => ({ label })) });
    const ranked = rankByUncertainty([prompt('sure', ['L1', 'L1']), prompt('split', ['L1', 'L4']), prompt('sure2', ['L4', 'L4']), prompt('split2', ['L2', 'L3'])]);
    expect(ranked.map((p) => p.id)).toEqual(['split', 'split2', 'sure', 'sure2']);
  });
});
