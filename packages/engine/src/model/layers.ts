/**
 * The decoder's building blocks as functions of tensors. Everything is shaped so that the matmuls
 * are plain 2-D without transpose flags: on tfjs-wasm a flagged or batched (3-D/4-D) matmul runs
 * about 10x slower than a plain 2-D one (package README), and tfjs' own MatMul gradient uses the flags.
 */
import * as tf from '@tensorflow/tfjs-core';
import { fusedAddRmsNorm, fusedKernels, fusedLinear, fusedMatMulNN, fusedMatMulNT, fusedMatMulTN, fusedRmsNorm, fusedRope, fusedSwiGlu } from '../runtime/fused.ts';
import type { RopeScaling } from './config.ts';

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

/** A 2-D matmul: `matmul2d` where gradients are wanted, plain tf.matMul where not (cheaper per call). */
export type Matmul = (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;
export const plainMatmul: Matmul = (a, b) => tf.matMul(a, b);

/**
 * A linear layer's product with its weight, in whatever layout the weight is kept:
 * `linear` for HF-layout (out, in) weights that train, `plainMatmul` for frozen weights stored
 * pre-transposed as (in, out).
 */
export type Projection = (x: tf.Tensor2D, weight: tf.Tensor2D) => tf.Tensor2D;

/** x (N, in) @ weight (out, in)^T, no gradient wrapper: one fused kernel, or a transpose and a matmul. */
export function timesTransposed(x: tf.Tensor2D, weight: tf.Tensor2D): tf.Tensor2D {
  return fusedLinear() ? fusedMatMulNT(x, weight) : tf.matMul(x, tf.transpose(weight));
}

/**
 * HF linear without bias: x (N, in) @ weight (out, in)^T -> (N, out). The gradient needs no
 * transpose of the weight: dx = dy @ W, and dW = dy^T @ x or (x^T @ dy)^T, whichever transposes
 * fewer elements (N*out, or N*in + in*out). Transposes are copies on wasm; this halves them
 * against matmul2d on a pre-transposed weight. With the fused kernels, x W^T, dy W and dy^T x are
 * one kernel each that reads the operands in place (kernels/assembly/matmul.ts): no transposes,
 * and no tfjs matmul, whose XNNPACK repacks a fresh right operand on every call and ran dy W at
 * 0.76x the kernel's speed (CPU time, tiny preset shapes, same process, interleaved).
 */
export const linear = tf.customGrad(((x: tf.Tensor, weight: tf.Tensor, save: tf.GradSaveFunc) => {
  save([x, weight]);
  const fused = fusedLinear();
  return {
    value: timesTransposed(x as tf.Tensor2D, weight as tf.Tensor2D),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sx, sw] = saved as [tf.Tensor2D, tf.Tensor2D];
      const g = dy as tf.Tensor2D; // (N, out)
      const [rows, inputs] = sx.shape;
      const outputs = g.shape[1];
      const dW = fused
        ? fusedMatMulTN(g, sx)
        : rows * outputs <= rows * inputs + inputs * outputs
          ? tf.matMul(tf.transpose(g), sx) // (out, N) @ (N, in)
          : tf.transpose(tf.matMul(tf.transpose(sx), g)); // ((in, N) @ (N, out))^T
      return [fused ? fusedMatMulNN(g, sw) : tf.matMul(g, sw), dW];
    },
  };
}) as never) as unknown as Projection;

/** `project` over unfused weights: each part's product, concatenated as the fused product would be. */
export function partsProjection(parts: Map<tf.Tensor, tf.Tensor2D[]> | undefined, project: Projection): Projection {
  if (!parts) return project;
  return (x, weight) => {
    const list = parts.get(weight);
    return list ? (tf.concat(list.map((w) => project(x, w)), 1) as tf.Tensor2D) : project(x, weight);
  };
}

/**
 * RMSNorm (Zhang & Sennrich 2019), as HF Llama: x / sqrt(mean(x^2) + eps) * weight, over the last
 * axis. Without `weight` the scaling is left out: frozen weights fold it into the next projection.
 */
export function rmsNorm(x: tf.Tensor2D, weight: tf.Tensor1D | undefined, eps: number): tf.Tensor2D {
  if (fusedKernels()) return fusedRmsNorm(x, weight, eps);
  const meanSquare = tf.mean(tf.square(x), -1, true); // (N, 1)
  const normed = tf.mul(x, tf.rsqrt(tf.add(meanSquare, eps)));
  return (weight ? tf.mul(normed, weight) : normed) as tf.Tensor2D;
}

/**
 * The residual stream's next value x + y and its RMSNorm (the next sublayer's input). Gradient-free
 * calls (frozen weights) with the fused kernels do both in one kernel: decoding steps are made of
 * such small ops, each paying tfjs' per-op cost.
 */
export function addAndNorm(x: tf.Tensor2D, y: tf.Tensor2D, weight: tf.Tensor1D | undefined, eps: number, withGradient: boolean): { sum: tf.Tensor2D; normed: tf.Tensor2D } {
  if (!withGradient && fusedKernels()) {
    const [sum, normed] = fusedAddRmsNorm(x, y, weight, eps);
    return { sum, normed };
  }
  const sum = tf.add(x, y) as tf.Tensor2D;
  return { sum, normed: rmsNorm(sum, weight, eps) };
}

/**
 * SwiGLU MLP (Shazeer 2020): down(silu(gate(x)) * up(x)), with gate and up fused into one
 * projection whose 2I outputs are [gate | up].
 */
export function swiglu(x: tf.Tensor2D, gateUp: tf.Tensor2D, down: tf.Tensor2D, project: Projection, gateUpBias?: tf.Tensor1D, downBias?: tf.Tensor1D): tf.Tensor2D {
  let h = project(x, gateUp); // (N, 2I)
  if (gateUpBias) h = tf.add(h, gateUpBias);
  // Frozen weights (plainMatmul) take no gradient.
  const y = project(fusedKernels() ? fusedSwiGlu(h, project !== plainMatmul) : siluGate(h), down); // (N, d)
  return downBias ? tf.add(y, downBias) : y;
}

/** silu(gate) * up, h (N, 2I) = [gate | up] -> (N, I), in tfjs ops (`fusedSwiGlu` is one kernel). */
export function siluGate(h: tf.Tensor2D): tf.Tensor2D {
  const inner = (h.shape[1] as number) / 2;
  const [g, u] = tf.split(h, [inner, inner], 1) as [tf.Tensor2D, tf.Tensor2D]; // (N, I) each
  return tf.mul(tf.mul(g, tf.sigmoid(g)), u);
}

/**
 * RoPE tables as HF computes them: inv_freq_i = theta^(-2i/d), angle = pos * inv_freq, and the
 * half-split layout cat(angles, angles). Returns (maxPositions, headDim) cos and sin.
 */
export function ropeTables(maxPositions: number, headDim: number, theta: number, scaling: RopeScaling = { rope_type: 'default' }): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const { cos, sin } = ropeTableValues(maxPositions, headDim, theta, scaling);
  return { cos: tf.tensor2d(cos, [maxPositions, headDim]), sin: tf.tensor2d(sin, [maxPositions, headDim]) };
}

/**
 * RoPE's inverse frequencies theta^(-2i/hd) (Su et al. 2021, eq. 15), rescaled as transformers'
 * modeling_rope_utils does: linear divides every one by factor (position interpolation, Chen et
 * al. 2023); llama3 divides the low frequencies (wavelength past original_max / low_freq_factor)
 * by factor, keeps the high ones (wavelength under original_max / high_freq_factor) and blends
 * linearly in between.
 */
export function ropeInverseFrequencies(headDim: number, theta: number, scaling: RopeScaling = { rope_type: 'default' }): number[] {
  const base = Array.from({ length: headDim / 2 }, (_, i) => Math.pow(theta, (-2 * i) / headDim));
  if (scaling.rope_type === 'default') return base;
  if (scaling.rope_type === 'linear') return base.map((f) => f / scaling.factor);
  const { factor, low_freq_factor: low, high_freq_factor: high, original_max_position_embeddings: context } = scaling;
  return base.map((f) => {
    const wavelength = (2 * Math.PI) / f;
    if (wavelength < context / high) return f;
    if (wavelength > context / low) return f / factor;
    const smooth = (context / wavelength - low) / (high - low);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
}

/** `ropeTables` as row-major arrays (the ONNX export stores them as initializers). */
export function ropeTableValues(maxPositions: number, headDim: number, theta: number, scaling: RopeScaling = { rope_type: 'default' }): { cos: Float32Array; sin: Float32Array } {
  const half = headDim / 2;
  const frequencies = ropeInverseFrequencies(headDim, theta, scaling);
  const cos = new Float32Array(maxPositions * headDim);
  const sin = new Float32Array(maxPositions * headDim);
  for (let pos = 0; pos < maxPositions; pos++) {
    for (let i = 0; i < half; i++) {
      const angle = pos * (frequencies[i] as number);
      for (const j of [i, i + half]) {
        cos[pos * headDim + j] = Math.cos(angle);
        sin[pos * headDim + j] = Math.sin(angle);
      }
    }
  }
  return { cos, sin };
}

/**
 * The fixed (hd, hd) matrix R with x @ R = rotate_half(x) = cat(-x2, x1): one matmul instead of
 * slice, slice, neg, concat (op count is what decoding pays for on wasm).
 */
export function rotateHalfMatrix(headDim: number): tf.Tensor2D {
  const half = headDim / 2;
  const r = new Float32Array(headDim * headDim);
  for (let j = 0; j < half; j++) {
    r[(j + half) * headDim + j] = -1; // out[j] = -x[j + half]
    r[j * headDim + j + half] = 1; // out[j + half] = x[j]
  }
  return tf.tensor2d(r, [headDim, headDim]);
}

/**
 * Rotates x (B, T, heads, hd) by per-token angles: x * cos + rotate_half(x) * sin (HF
 * `apply_rotary_pos_emb`). cos/sin: (B, T, 1, hd); rotate: `rotateHalfMatrix(hd)`.
 * R is a signed permutation with R^T = -R, so the gradient of x @ R is -(dy @ R).
 * `withGradient: false` (frozen weights) skips the custom-gradient wrapper.
 */
export function applyRope(x: tf.Tensor4D, cos: tf.Tensor4D, sin: tf.Tensor4D, rotate: tf.Tensor2D, withGradient = true): tf.Tensor4D {
  if (fusedKernels()) return fusedRope(x, cos, sin);
  const [b, t, h, hd] = x.shape;
  const rotateHalf = !withGradient ? (flat: tf.Tensor2D) => tf.matMul(flat, rotate) : tf.customGrad(((flat: tf.Tensor) => ({
    value: tf.matMul(flat as tf.Tensor2D, rotate),
    gradFunc: (dy: tf.Tensor) => tf.neg(tf.matMul(dy as tf.Tensor2D, rotate)),
  })) as never) as unknown as (flat: tf.Tensor2D) => tf.Tensor2D;
  const rotated = tf.reshape(rotateHalf(tf.reshape(x, [b * t * h, hd])), [b, t, h, hd]); // (B, T, heads, hd)
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

/** x as a constant: its value, with no gradient flowing back (PyTorch `detach`; tfjs has none). */
export const stopGradient = tf.customGrad(((x: tf.Tensor) => ({
  value: tf.clone(x),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
})) as never) as unknown as <T extends tf.Tensor>(x: T) => T;
