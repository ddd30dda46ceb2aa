import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { dpoLoss, grpoLoss, type GrpoLossOptions } from '../../stages/lib/rl/losses.ts';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const t1 = (values: number[]) => tf.tensor1d(values);
const t2 = (values: number[][]) => tf.tensor2d(values);

describe('dpoLoss', () => {
  // One pair: log π(y_w) = -1, log π(y_l) = -3, reference -2 and -2.
  // h = (-1 - -3) - (-2 - -2) = 2; with β = 0.5, βh = 1.
  // -log σ(1) = log(1 + e^-1) = 0.3132617;  -log σ(-1) = log(1 + e) = 1.3132617.
  const run = (type: 'sigmoid' | 'ipo' | 'hinge' | 'robust', labelSmoothing = 0) =>
    dpoLoss(t1([-1]), t1([-3]), t1([-2]), t1([-2]), { type, beta: 0.5, labelSmoothing });

  it('sigmoid is -log σ(βh), and cDPO mixes in the flipped label', () => {
    expect(run('sigmoid').loss.dataSync()[0]).toBeCloseTo(0.3132617, 6);
    // 0.9 · 0.3132617 + 0.1 · 1.3132617 = 0.4132617
    expect(run('sigmoid', 0.1).loss.dataSync()[0]).toBeCloseTo(0.4132617, 6);
  });

  it('robust is the unbiased correction divided by 1 - 2ε', () => {
    // (0.9 · 0.3132617 - 0.1 · 1.3132617) / 0.8 = 0.1882617
    expect(run('robust', 0.1).loss.dataSync()[0]).toBeCloseTo(0.1882617, 6);
  });

  it('hinge is max(0, 1 - βh) and ipo is (h - 1/(2β))²', () => {
    expect(run('hinge').loss.dataSync()[0]).toBeCloseTo(0, 6); // 1 - 1
    expect(run('ipo').loss.dataSync()[0]).toBeCloseTo(1, 6); // (2 - 1)²
  });

  it('reports the implicit rewards β(log π - log π_ref)', () => {
    const result = run('sigmoid');
    expect(Array.from(result.chosenRewards.dataSync())).toEqual([0.5]); // 0.5 · (-1 + 2)
    expect(Array.from(result.rejectedRewards.dataSync())).toEqual([-0.5]); // 0.5 · (-3 + 2)
  });
});

describe('grpoLoss', () => {
  const options: GrpoLossOptions = { type: 'grpo', epsilon: 0.2, epsilonHigh: 0.2, beta: 0, maxCompletionLength: 4 };
  // One completion of two tokens: log π = [-1, -2], log π_old = [-1, -2.5] -> ρ = [1, e^0.5 = 1.6487].
  // A = 1 on both: clip(ρ) = [1, 1.2]; min(ρA, clip(ρ)A) = [1, 1.2]; per-token loss [-1, -1.2].
  const logp = () => t2([[-1, -2]]);
  const old = () => t2([[-1, -2.5]]);
  const adv = () => t2([[1, 1]]);

  it('clips the ratio and averages per sequence', () => {
    const result = grpoLoss(logp(), old(), undefined, adv(), t2([[1, 1]]), options);
    expect(result.loss.dataSync()[0]).toBeCloseTo(-1.1, 5); // mean(-1, -1.2)
    expect(result.clipFraction.dataSync()[0]).toBeCloseTo(0.5, 6); // token 2: ρ > 1.2 with A > 0
    expect(result.meanKl.dataSync()[0]).toBe(0);
  });

  it('ignores masked tokens', () => {
    const result = grpoLoss(logp(), old(), undefined, adv(), t2([[1, 0]]), options);
    expect(result.loss.dataSync()[0]).toBeCloseTo(-1, 6);
    expect(result.clipFraction.dataSync()[0]).toBe(0);
  });

  it('adds β times the k3 KL to the reference', () => {
    // log π_ref = [-1, -1]: d = ref - log π = [0, 1]; KL₃ = e^d - d - 1 = [0, e - 2 = 0.7182818].
    // Per-token loss [-1, -1.2 + 0.1 · 0.7182818] = [-1, -1.1281718]; mean -1.0640859.
    const result = grpoLoss(logp(), old(), t2([[-1, -1]]), adv(), t2([[1, 1]]), { ...options, beta: 0.1 });
    expect(result.loss.dataSync()[0]).toBeCloseTo(-1.0640859, 5);
    expect(result.meanKl.dataSync()[0]).toBeCloseTo(0.3591409, 5);
    expect(() => grpoLoss(logp(), old(), undefined, adv(), t2([[1, 1]]), { ...options, beta: 0.1 })).toThrow(
      'no reference log-probs',
    );
  });

  it('aggregates by sequence (grpo), by token (bnpo, dapo) or by budget (dr_grpo)', () => {
    // ρ = 1 everywhere, so the per-token loss is -A: [[-1, -1], [-2, masked]].
    const same = t2([[0, 0], [0, 0]]);
    const a = t2([[1, 1], [2, 0]]);
    const mask = t2([[1, 1], [1, 0]]);
    const loss = (type: GrpoLossOptions['type']) => grpoLoss(same, same, undefined, a, mask, { ...options, type }).loss.dataSync()[0];
    expect(loss('grpo')).toBeCloseTo(-1.5, 6); // mean(-2/2, -2/1)
    expect(loss('bnpo')).toBeCloseTo(-4 / 3, 6); // -4 over 3 tokens
    expect(loss('dapo')).toBeCloseTo(-4 / 3, 6);
    expect(loss('dr_grpo')).toBeCloseTo(-4 / 8, 6); // -4 over B·L = 2·4
  });
});
