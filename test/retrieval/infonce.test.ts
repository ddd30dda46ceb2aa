import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '#engine';
import { infoNceLoss, meanPooled } from '../../stages/lib/retrieval/embedding.ts';

beforeAll(async () => {
  await initEngine({ backend: 'cpu' });
});

describe('InfoNCE (van den Oord et al. 2018, eq. 4) on a hand-derived case', () => {
  // Queries q1 = (1, 0), q2 = (0, 1); candidates c1 = (1, 0), c2 = (0, 1), c3 = (0.6, 0.8) (a hard
  // negative); q1's positive is c1, q2's is c2; τ = 0.5.
  // Logits s/τ: q1 -> [2, 0, 1.2], q2 -> [0, 2, 1.6].
  // L1 = log(e² + 1 + e^1.2) − 2 = log(11.70917) − 2 = 0.46037; L2 = log(1 + e² + e^1.6) − 2 = log(13.34209) − 2 = 0.59092.
  // L = (L1 + L2) / 2 = 0.52565.
  const q = [[1, 0], [0, 1]];
  const c = [[1, 0], [0, 1], [0.6, 0.8]];
  const tau = 0.5;

  it('loss', () => {
    const loss = infoNceLoss(tf, tf.tensor2d(q), tf.tensor2d(c), [0, 1], tau);
    expect(loss.dataSync()[0]).toBeCloseTo(0.52565, 4);
  });

  it('gradient: ∂L/∂q_i = (Σ_j p_ij c_j − c_pos(i)) / (Bτ), ∂L/∂c_j = Σ_i (p_ij − [j = pos(i)]) q_i / (Bτ)', () => {
    // q1's softmax over [2, 0, 1.2]: e²/11.70917 = 0.63105, 1/11.70917 = 0.08540, e^1.2/11.70917 = 0.28355.
    // ∂L/∂q1 = ((0.63105 + 0.28355·0.6 − 1, 0.08540 + 0.28355·0.8)) / 1 = (−0.19882, 0.31224).
    // q2's softmax over [0, 2, 1.6]: 1/13.34209 = 0.07495, e²/13.34209 = 0.55382, e^1.6/13.34209 = 0.37123.
    // ∂L/∂q2 = (0.07495 + 0.37123·0.6, 0.55382 + 0.37123·0.8 − 1) = (0.29769, −0.14920).
    // ∂L/∂c3 = (0.28355·q1 + 0.37123·q2) / 1 = (0.28355, 0.37123).
    const grads = tf.grads((qs: tf.Tensor, cs: tf.Tensor) => infoNceLoss(tf, qs as tf.Tensor2D, cs as tf.Tensor2D, [0, 1], tau))([tf.tensor2d(q), tf.tensor2d(c)]);
    const [dq, dc] = grads.map((g) => Array.from(g!.dataSync()));
    [-0.19882, 0.31224, 0.29769, -0.1492].forEach((v, i) => expect(dq![i]).toBeCloseTo(v, 4));
    expect(dc![4]).toBeCloseTo(0.28355, 4);
    expect(dc![5]).toBeCloseTo(0.37123, 4);
  });

  it('mean pooling averages the real tokens only and normalises', () => {
    // Row 0: tokens (3, 4) and (1, 0), then a padded (100, 100): mean (2, 2) -> (0.7071, 0.7071).
    const hidden = tf.tensor3d([[[3, 4], [1, 0], [100, 100]]]);
    const pooled = Array.from(meanPooled(tf, hidden, [[1, 1, 0]]).dataSync());
    expect(pooled[0]).toBeCloseTo(Math.SQRT1_2, 6);
    expect(pooled[1]).toBeCloseTo(Math.SQRT1_2, 6);
  });
});
