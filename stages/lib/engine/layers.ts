/**
 * The decoder's building blocks as functions of tensors. Everything is shaped so that the matmuls
 * are plain 2-D without transpose flags: on tfjs-wasm a flagged or batched (3-D/4-D) matmul runs
 * about 10x slower than a plain 2-D one (FACTS.md), and tfjs' own MatMul gradient uses the flags.
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * a @ b for 2-D tensors, with a gradient that transposes explicitly:
 * da = dy @ b^T, db = a^T @ dy.
 */
export const matmul2d = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  save([a, b]);
  return {
    value: tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sa, sb] = saved as [tf.Tensor2D, tf.Tensor2D];
      return [tf.matMul(dy as tf.Tensor2D, tf.transpose(sb)), tf.matMul(tf.transpose(sa), dy as tf.Tensor2D)];
    },
  };
}) as never) as unknown as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

/** HF linear: x (N, in) @ weight (out, in)^T + bias (out) -> (N, out). */
export function linear(x: tf.Tensor2D, weight: tf.Tensor2D, bias?: tf.Tensor1D): tf.Tensor2D {
  const y = matmul2d(x, tf.transpose(weight));
  return bias ? tf.add(y, bias) : y;
}

/** RMSNorm (Zhang & Sennrich 2019), as HF Llama: x / sqrt(mean(x^2) + eps) * weight, over the last axis. */
export function rmsNorm(x: tf.Tensor2D, weight: tf.Tensor1D, eps: number): tf.Tensor2D {
  const meanSquare = tf.mean(tf.square(x), -1, true); // (N, 1)
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(meanSquare, eps))), weight);
}

/** SwiGLU MLP (Shazeer 2020): down(silu(gate(x)) * up(x)). */
export function swiglu(x: tf.Tensor2D, gate: tf.Tensor2D, up: tf.Tensor2D, down: tf.Tensor2D, biases?: { gate?: tf.Tensor1D; up?: tf.Tensor1D; down?: tf.Tensor1D }): tf.Tensor2D {
  const g = linear(x, gate, biases?.gate);
  const silu = tf.mul(g, tf.sigmoid(g));
  return linear(tf.mul(silu, linear(x, up, biases?.up)), down, biases?.down);
}

/**
 * RoPE tables as HF computes them: inv_freq_i = theta^(-2i/d), angle = pos * inv_freq, and the
 * half-split layout cat(angles, angles). Returns (maxPositions, headDim) cos and sin.
 */
export function ropeTables(maxPositions: number, headDim: number, theta: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const half = headDim / 2;
  const cos = new Float32Array(maxPositions * headDim);
  const sin = new Float32Array(maxPositions * headDim);
  for (let pos = 0; pos < maxPositions; pos++) {
    for (let i = 0; i < half; i++) {
      const angle = pos * Math.pow(theta, (-2 * i) / headDim);
      for (const j of [i, i + half]) {
        cos[pos * headDim + j] = Math.cos(angle);
        sin[pos * headDim + j] = Math.sin(angle);
      }
    }
  }
  return { cos: tf.tensor2d(cos, [maxPositions, headDim]), sin: tf.tensor2d(sin, [maxPositions, headDim]) };
}

/**
 * Rotates x (B, T, heads, hd) by per-token angles: x * cos + rotate_half(x) * sin, with
 * rotate_half(x) = cat(-x2, x1) (HF `apply_rotary_pos_emb`). cos/sin: (B, T, 1, hd).
 */
export function applyRope(x: tf.Tensor4D, cos: tf.Tensor4D, sin: tf.Tensor4D): tf.Tensor4D {
  const [b, t, h, hd] = x.shape;
  const x1 = tf.slice(x, [0, 0, 0, 0], [b, t, h, hd / 2]);
  const x2 = tf.slice(x, [0, 0, 0, hd / 2], [b, t, h, hd / 2]);
  const rotated = tf.concat([tf.neg(x2), x1], 3);
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin));
}

/** Additive mask value: large but finite, so a fully masked row (a left-pad query) stays finite. */
export const MASKED = -1e9;

/**
 * Attention bias (B, repeat*Tq, Tk) for queries at key offsets past..past+Tq-1: 0 where key j is at
 * or before the query and is not padding, MASKED elsewhere. `keyMask` (B, Tk): 1 real, 0 pad.
 * `repeat` stacks the (Tq, Tk) block that many times (the query heads sharing one kv head).
 * Built in JS: tfjs-wasm's Tile was a visible cost.
 */
export function attentionBias(keyMask: number[][], queryLength: number, repeat = 1): tf.Tensor3D {
  const batch = keyMask.length;
  const keys = keyMask[0]?.length ?? 0;
  const past = keys - queryLength;
  const block = queryLength * keys;
  const bias = new Float32Array(batch * repeat * block);
  for (let b = 0; b < batch; b++) {
    const mask = keyMask[b] as number[];
    const start = b * repeat * block;
    for (let i = 0; i < queryLength; i++) {
      for (let j = 0; j < keys; j++) {
        if (j > past + i || mask[j] === 0) bias[start + i * keys + j] = MASKED;
      }
    }
    for (let r = 1; r < repeat; r++) bias.copyWithin(start + r * block, start, start + block);
  }
  return tf.tensor3d(bias, [batch, repeat * queryLength, keys]);
}

/** Position ids from a padding mask (HF generate): cumsum(mask) - 1, pads at 0. */
export function positionsFromMask(mask: number[][]): number[][] {
  return mask.map((row) => {
    let seen = 0;
    return row.map((m) => (m === 0 ? 0 : seen++));
  });
}
