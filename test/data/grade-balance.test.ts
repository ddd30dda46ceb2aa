import { describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import { balancePairs, type PreferencePair } from '../../stages/dpo/pairs.ts';
import { drawFromPool } from '../../stages/lib/rl/pool.ts';
import { balancedDraw, balancedOrder, balanceEnabled, gradeWeights, resolveGradeBalance } from '../../stages/lib/relevance/grade-balance.ts';
import { epochExamples } from '../../stages/sft/index.ts';
import type { Grade } from '../../stages/lib/relevance/types.ts';

const grades = (counts: Partial<Record<Grade, number>>): Grade[] => Object.entries(counts).flatMap(([g, n]) => Array<Grade>(n).fill(g as Grade));
// The one-item-per-query set of issue #30: 62 % L4, 23 % L3, 12 % L1, 3 % L2 (out of 100 here).
const skewed = grades({ L4: 62, L3: 23, L1: 12, L2: 3 });
const balance = { temper: 0.5, cap: 4 };

describe('grade-balanced draws', () => {
  it('weights each grade by the tempered, capped inverse of its share (worked by hand)', () => {
    const w = gradeWeights(skewed, balance);
    expect(w.shares).toEqual({ L1: 0.12, L2: 0.03, L3: 0.23, L4: 0.62 });
    // sqrt(0.62 / 0.23) = 1.64184, sqrt(0.62 / 0.12) = 2.27303, sqrt(0.62 / 0.03) = 4.5461 -> cap 4.
    expect(w.weights.L4).toBe(1);
    expect(w.weights.L3).toBeCloseTo(1.64184, 5);
    expect(w.weights.L1).toBeCloseTo(2.27303, 5);
    expect(w.weights.L2).toBe(4);
    // mass = 0.62 + 0.23·1.64185 + 0.12·2.27303 + 0.03·4 = 1.39039 -> 0.4459, 0.2716, 0.1962, 0.0863.
    expect(w.balancedShares.L4).toBeCloseTo(0.4459, 4);
    expect(w.balancedShares.L3).toBeCloseTo(0.2716, 4);
    expect(w.balancedShares.L1).toBeCloseTo(0.1962, 4);
    expect(w.balancedShares.L2).toBeCloseTo(0.0863, 4);
    // A grade the set lacks weighs nothing; temper 0 weighs every grade 1.
    expect(gradeWeights(grades({ L1: 1, L4: 3 }), balance).weights.L2).toBe(0);
    expect(Object.values(gradeWeights(skewed, { temper: 0, cap: 4 }).weights)).toEqual([1, 1, 1, 1]);
  });

  it("draws each grade about its balanced share's count, an item at most once more than its expected count", () => {
    const items = skewed.map((label, i) => ({ i, label }));
    const drawn = balancedDraw(items, (x) => x.label, balance, 100, new Rng(7, 'test'));
    expect(drawn).toHaveLength(100);
    const count = (g: Grade) => drawn.filter((x) => x.label === g).length;
    // Expected counts 44.59, 27.16, 19.62, 8.63; systematic sampling is within one of each per item
    // and within the number of items of a grade in total, and every L2 item is drawn 2 or 3 times
    // (expected 100 · 4 / 139.04 = 2.88 each).
    expect(Math.abs(count('L4') - 44.59)).toBeLessThan(2);
    expect(Math.abs(count('L2') - 8.63)).toBeLessThan(2);
    for (const item of items.filter((x) => x.label === 'L2')) expect([2, 3]).toContain(drawn.filter((x) => x === item).length);
    for (const item of items.filter((x) => x.label === 'L4')) expect([0, 1]).toContain(drawn.filter((x) => x === item).length);
  });

  it('orders without repeats so a prefix favours the rare grades', () => {
    const items = skewed.map((label, i) => ({ i, label }));
    let rareInPrefix = 0;
    for (let seed = 0; seed < 200; seed++) {
      const order = balancedOrder(items, (x) => x.label, balance, new Rng(seed, 'order'));
      expect(new Set(order).size).toBe(100);
      rareInPrefix += order.slice(0, 25).filter((x) => x.label === 'L2').length;
    }
    // A uniform prefix of 25 holds 0.75 L2 items on average; weighted by 4 (without replacement)
    // about 4 times that at first: well above 1.5 over 200 seeds.
    expect(rareInPrefix / 200).toBeGreaterThan(1.5);
  });

  it('is on under auto for imported data whose majority grade holds more than half of it, never for the built-in world', () => {
    const examples = (labels: Grade[], source: string) => labels.map((label) => ({ label, meta: { source } }));
    expect(balanceEnabled('auto', examples(skewed, 'esci'))).toBe(true); // L4 62 % > 50 %
    // Chorus's train shares (L1 44 %, L4 45 %, L2 8 %, L3 3 %): no majority, no balance.
    expect(balanceEnabled('auto', examples(grades({ L1: 44, L4: 45, L2: 8, L3: 3 }), 'chorus'))).toBe(false);
    expect(balanceEnabled('auto', examples(grades({ L1: 44, L4: 45, L2: 8, L3: 3 }), 'chorus'), 0.4)).toBe(true);
    expect(balanceEnabled('auto', examples(skewed, 'world'))).toBe(false);
    expect(balanceEnabled('on', examples(grades({ L1: 1, L4: 1 }), 'world'))).toBe(true);
    expect(balanceEnabled('off', examples(skewed, 'esci'))).toBe(false);
  });
});

describe('where the balance applies', () => {
  const imported = skewed.map((label) => ({ label, meta: { source: 'esci' } }));
  const params = { mode: 'auto' as const, majority: 0.5, temper: 0.5, cap: 4 };

  it('records the shares and weights for the manifest, and nothing but "off" for the built-in world', () => {
    const { balance, metrics } = resolveGradeBalance(params, imported);
    expect(balance).toEqual({ temper: 0.5, cap: 4 });
    expect(metrics.grade_balance).toBe(1);
    expect(metrics.grade_share_L2).toBe(0.03);
    expect(metrics.grade_weight_L2).toBe(4);
    expect(resolveGradeBalance(params, skewed.map((label) => ({ label, meta: { source: 'world' } })))).toEqual({ balance: undefined, metrics: { grade_balance: 0 } });
  });

  it("SFT: an epoch is the train set itself without balance, else a seeded balanced draw of the set's size", () => {
    const set = skewed.map((grade, i) => ({ i, grade }));
    expect(epochExamples(set, undefined, 13, 0)).toBe(set);
    const epoch0 = epochExamples(set, balance, 13, 0);
    expect(epoch0).toHaveLength(100);
    expect(epochExamples(set, balance, 13, 0)).toEqual(epoch0); // a resumed run sees the same epoch
    expect(epoch0.filter((e) => e.grade === 'L2').length).toBeGreaterThanOrEqual(7); // 8.63 expected; 3 in the set
  });

  it('the RL pool: a balanced sample has no repeats; without balance it is the seeded shuffle it was', () => {
    const records = skewed.map((label, i) => ({ i, example: { label } }));
    expect(drawFromPool([...records], {}, 10, new Rng(3, 'pool'))).toEqual(new Rng(3, 'pool').shuffle([...records]).slice(0, 10));
    const drawn = drawFromPool([...records], { balance }, 50, new Rng(3, 'pool'));
    expect(new Set(drawn).size).toBe(50);
  });

  it('DPO: as many pairs as were built, weighted by gold grade', () => {
    const pairs = skewed.map((grade, i): PreferencePair => ({ id: `p${i}`, messages: [], chosen: 'c', rejected: 'r', chosenFrom: 'sample', grade }));
    expect(balancePairs(pairs, undefined, new Rng(1))).toBe(pairs);
    const balanced = balancePairs(pairs, balance, new Rng(1));
    expect(balanced).toHaveLength(100);
    expect(balanced.filter((p) => p.grade === 'L4').length).toBeLessThan(50); // 62 before, 44.6 expected
  });
});
