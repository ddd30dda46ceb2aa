import { describe, expect, it } from 'vitest';
import { groupAdvantages, informativeGroups, passAtK, std, stepwiseAdvantages } from '../../stages/lib/rl/advantages.ts';

describe('groupAdvantages', () => {
  // Rewards for two prompts, G = 4: [1, 0, 0, 1] and [1, 1, 1, 1].
  const rewards = [1, 0, 0, 1, 1, 1, 1, 1];

  it("'group' divides by each group's unbiased std plus 1e-4", () => {
    // Group 1: mean 0.5, deviations ±0.5, var = 4·0.25/3 = 1/3, std = 0.577350.
    // A = ±0.5 / (0.577350 + 0.0001) = ±0.865876. Group 2 is constant: every A is 0.
    const a = groupAdvantages(rewards, 4, 'group');
    const expected = [0.865876, -0.865876, -0.865876, 0.865876, 0, 0, 0, 0];
    a.forEach((value, i) => expect(value).toBeCloseTo(expected[i] as number, 5));
  });

  it("'batch' divides by the whole batch's std", () => {
    // Batch mean 0.75; squared deviations 6·0.0625 + 2·0.5625 = 1.5; var = 1.5/7; std = 0.462910.
    // A = 0.5 / (0.462910 + 0.0001) = 0.5 / 0.463010 = 1.079890 for the first group.
    const a = groupAdvantages(rewards, 4, 'batch');
    expect(a[0]).toBeCloseTo(1.07989, 5);
    expect(a[1]).toBeCloseTo(-1.07989, 5);
    expect(a[4]).toBe(0);
  });

  it("'none' only centres", () => {
    expect(groupAdvantages(rewards, 4, 'none')).toEqual([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]);
  });

  it('refuses a batch that is not whole groups', () => {
    expect(() => groupAdvantages([1, 0, 1], 2, 'none')).toThrow('3 rewards cannot be split into groups of 2');
  });

  it('std is the unbiased estimate', () => {
    expect(std([2, 4, 4, 4, 5, 5, 7, 9])).toBeCloseTo(Math.sqrt(32 / 7), 10);
  });
});

describe('stepwiseAdvantages', () => {
  it('adds the normalised rewards of the own and later steps to the outcome advantage', () => {
    // One group of two, scale 'none'. Outcome [1, 0] -> A = [0.5, -0.5].
    // Step 0 rewards [1, 1] -> [0, 0]; step 1 rewards [1, 0] -> [0.5, -0.5].
    // Completion 0: step 1 gets 0.5 + 0.5 = 1; step 0 gets 0.5 + (0 + 0.5) = 1; after the steps 0.5.
    const a = stepwiseAdvantages([1, 0], [[1, 1], [1, 0]], 2, 'none');
    expect(a).toEqual([
      [1, 1, 0.5],
      [-1, -1, -0.5],
    ]);
  });
});

describe('informativeGroups', () => {
  it('drops groups that are all right or all wrong', () => {
    // Groups: [right, right] [right, wrong] [wrong, wrong] [right, wrong] -> keep 1 and 3.
    expect(informativeGroups([true, true, true, false, false, false, true, false], 2)).toEqual([1, 3]);
  });
});

describe('passAtK', () => {
  it('matches 1 - C(n-c, k) / C(n, k)', () => {
    expect(passAtK(5, 2, 1)).toBeCloseTo(2 / 5, 12); // 1 - C(3,1)/C(5,1) = 1 - 3/5
    expect(passAtK(5, 2, 2)).toBeCloseTo(1 - 3 / 10, 12); // C(3,2)=3, C(5,2)=10
    expect(passAtK(4, 3, 2)).toBe(1); // fewer than k wrong samples: always a hit
    expect(passAtK(4, 0, 2)).toBe(0);
  });
});
