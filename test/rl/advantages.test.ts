import { describe, expect, it } from 'vitest';
import { diverseGroups, dyknowAdvantages, groupAdvantages, informativeGroups, stepwiseAdvantages } from '../../stages/lib/rl/advantages.ts';
import { std } from '../../stages/lib/relevance/grade-agreement.ts';
import { unbiasedPassAtK } from '../../stages/lib/rl/pass-at-k.ts';

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
  it('adds the weighted, normalised rewards of the own and later steps to the outcome advantage', () => {
    // One group of two, scale 'none'. Outcome (label only) [1, 0] -> A = [0.5, -0.5].
    // One stepped reward of weight 2: step 0 rewards [1, 1] -> [0, 0]; step 1 [1, 0] -> [0.5, -0.5].
    // Completion 0: step 1 gets 0.5 + 2·0.5 = 1.5; step 0 gets 0.5 + 2·(0 + 0.5) = 1.5; after the steps 0.5.
    const a = stepwiseAdvantages([1, 0], [{ weight: 2, steps: [[1, 1], [1, 0]] }], 2, 'none');
    expect(a).toEqual([
      [1.5, 1.5, 0.5],
      [-1.5, -1.5, -0.5],
    ]);
  });

  it("keeps the step weight under 'group' scaling (it multiplies after normalising)", () => {
    // Outcome [1, 0]: mean 0.5, unbiased std √0.5 = 0.7071068, A = ±0.5 / 0.7072068 = ±0.7070068.
    // Step 1 rewards [1, 0] normalise the same way to ±0.7070068; step 0 [1, 1] to 0.
    // Weight 0.5: completion 0, steps 0 and 1: 0.7070068 · (1 + 0.5) = 1.0605102; outside: 0.7070068.
    // Weight 1: 0.7070068 · 2 = 1.4140136. Were the weight inside the normalisation, both would be equal.
    const half = stepwiseAdvantages([1, 0], [{ weight: 0.5, steps: [[1, 1], [1, 0]] }], 2, 'group');
    const whole = stepwiseAdvantages([1, 0], [{ weight: 1, steps: [[1, 1], [1, 0]] }], 2, 'group');
    [1.0605102, 1.0605102, 0.7070068].forEach((v, k) => expect(half[0]?.[k]).toBeCloseTo(v, 6));
    [-1.0605102, -1.0605102, -0.7070068].forEach((v, k) => expect(half[1]?.[k]).toBeCloseTo(v, 6));
    expect(whole[0]?.[0]).toBeCloseTo(1.4140136, 6);
  });

  it('sums several stepped rewards, each normalised apart', () => {
    // Scale 'none', outcome [0, 0] -> 0. Reward f (w 1): one step, [1, 0] -> ±0.5.
    // Reward g (w 3): one step, [0, 1] -> ∓0.5. Completion 0: 1·0.5 + 3·(-0.5) = -1; completion 1: +1.
    const a = stepwiseAdvantages([0, 0], [{ weight: 1, steps: [[1], [0]] }, { weight: 3, steps: [[0], [1]] }], 2, 'none');
    expect(a).toEqual([
      [-1, 0],
      [1, 0],
    ]);
  });
});

describe('dyknowAdvantages (DyKnow-RAG inter-group scaling)', () => {
  it('standardises over the union of both groups and scales by the posterior gap', () => {
    // G = 2; prompt 1: without context [0, 0] (both wrong), with context [1, 0] (one right).
    //   acc_without 0, acc_with 0.5: β = 4σ(4·0.5) = 4·0.8807971 = 3.5231883.
    //   Union [0, 0, 1, 0]: mean 0.25, squared deviations 3·0.0625 + 0.5625 = 0.75, var 0.75/3, std 0.5;
    //   Ã = (r − 0.25)/0.5001 = [-0.4999000, -0.4999000, 1.4997001, -0.4999000].
    //   α = 1.5: 1.5·1.4997001 = 2.2495501, clamped to 2; β·(-0.4999000) = -1.7612419.
    // Prompt 2: without [1, 0], with [1, 0]: equal accuracies, β = 4σ(0) = 2.
    //   Union [1, 0, 1, 0]: std √(4·0.25/3) = 0.5773503; Ã = ±0.5/0.5774503 = ±0.8658756.
    //   Positive: 1.5·0.8658756 = 1.2988131; negative: 2·(-0.8658756) = -1.7317512.
    const { advantages, betas } = dyknowAdvantages(
      [0, 0, 1, 0, 1, 0, 1, 0],
      [false, false, true, false, true, false, true, false],
      2,
      { alpha: 1.5, clamp: 2 },
    );
    const expected = [-1.7612419, -1.7612419, 2, -1.7612419, 1.2988131, -1.7317512, 1.2988131, -1.7317512];
    advantages.forEach((a, i) => expect(a).toBeCloseTo(expected[i] as number, 6));
    expect(betas[0]).toBeCloseTo(3.5231883, 6);
    expect(betas[1]).toBe(2);
  });

  it('refuses verdicts that do not match the rewards', () => {
    expect(() => dyknowAdvantages([1, 0], [true], 1, { alpha: 1, clamp: 2 })).toThrow('2 rewards but 1 verdicts');
  });
});

describe('diverseGroups (SRPO diversified filtering)', () => {
  it('keeps groups with at least the minimum of distinct reasoning paths, whitespace aside', () => {
    // Group 0: "a b" twice (one with a double space) and "c": 2 distinct. Group 1: one path.
    const reasoning = ['<think>a b', '<think>a  b', '<think>c', '<think>x', '<think>x', '<think>x'];
    expect(diverseGroups(reasoning, 3, 2)).toEqual([0]);
    expect(diverseGroups(reasoning, 3, 1)).toEqual([0, 1]);
  });
});

describe('informativeGroups', () => {
  it('drops groups that are all right or all wrong', () => {
    // Groups: [right, right] [right, wrong] [wrong, wrong] [right, wrong] -> keep 1 and 3.
    expect(informativeGroups([true, true, true, false, false, false, true, false], 2)).toEqual([1, 3]);
  });
});

describe('unbiasedPassAtK', () => {
  it('matches 1 - C(n-c, k) / C(n, k)', () => {
    expect(unbiasedPassAtK(5, 2, 1)).toBeCloseTo(2 / 5, 12); // 1 - C(3,1)/C(5,1) = 1 - 3/5
    expect(unbiasedPassAtK(5, 2, 2)).toBeCloseTo(1 - 3 / 10, 12); // C(3,2)=3, C(5,2)=10
    expect(unbiasedPassAtK(4, 3, 2)).toBe(1); // fewer than k wrong samples: always a hit
    expect(unbiasedPassAtK(4, 0, 2)).toBe(0);
  });
});
