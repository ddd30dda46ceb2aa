/**
 * Grouped-query causal self-attention with RoPE (Vaswani et al. 2017 eq. 1; Ainslie et al. 2023;
 * Su et al. 2021), one layer's worth, from the layer's input to its o_proj output. Shape comments:
 * B batch, T new tokens, Tk keys (past + new), H query heads, Hkv key/value heads, G = H / Hkv,
 * hd head width.
 *
 * Three paths, by what the wasm backend's fused kernels (fused.ts) cover:
 * - many tokens without a cache (training, teacher-forced scoring, prefill): RoPE and attention are
 *   one kernel each over the projection's (B*T, (H + 2Hkv) hd) output, forward and backward, with
 *   no transposes (the context comes out in the (B*T, H hd) layout o_proj takes);
 * - one token on frozen weights (a decoding step): one kernel for RoPE, the cache append and the
 *   attention of every row and head;
 * - anything else, or fused kernels off: tfjs ops, shaped for plain 2-D matmuls (layers.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import { fusedAttention, fusedDecodeAttention, fusedKernels, fusedRope, fusedRopeFolded } from '../runtime/fused.ts';
import { applyRope, attentionBias, plainMatmul } from './layers.ts';
import type { DerivedWeights, LayerCache, LayerWeights, Model } from './model-types.ts';

/**
 * Which keys each query may see, shared by every layer of one decoder call, built on first use:
 * `bias` (B, G*T or 1, Tk) additive for the tfjs ops; `keys` (B, Tk) 1 / 0 for the fused kernels
 * (causality is by position there).
 */
export interface AttentionMasks {
  bias(): tf.Tensor3D;
  keys(): tf.Tensor2D;
}

/** Masks for queries at the last `steps` of keyMask's (B, Tk) positions. */
export function attentionMasks(keyMask: number[][], steps: number, group: number): AttentionMasks {
  let bias: tf.Tensor3D | undefined;
  let keys: tf.Tensor2D | undefined;
  return {
    // Prefill stacks the G query heads of a kv head as rows, so its bias repeats G times.
    bias: () => (bias ??= attentionBias(keyMask, steps, steps === 1 ? 1 : group)),
    keys: () => (keys ??= tf.tensor2d(keyMask, [keyMask.length, keyMask[0]?.length ?? 0], 'float32')),
  };
}

/** What one layer's attention sees besides its weights. */
export interface AttentionInput {
  /** (B*T, d), normed */
  x: tf.Tensor2D;
  batch: number;
  steps: number;
  /** (B, T, 1, hd) at each new token's position */
  cos: tf.Tensor4D;
  sin: tf.Tensor4D;
  /** The same as (B*T, hd) rows (reshaped once per decoder call, not per layer). */
  cosRows: tf.Tensor2D;
  sinRows: tf.Tensor2D;
  masks: AttentionMasks;
  past?: LayerCache;
  /** Whether the caller keeps the extended cache (generation); training and scoring do not. */
  withCache: boolean;
}

/** Returns o_proj's output (B*T, d), and the layer's cache extended by these tokens when asked. */
export function attention(model: Model, layer: LayerWeights, weights: DerivedWeights, input: AttentionInput): { out: tf.Tensor2D; cache?: LayerCache } {
  const { project } = weights;
  let qkv = project(input.x, layer.qkv); // (B*T, (H + 2 Hkv) hd), frozen: + (H + Hkv) hd rotated q|k
  if (layer.qkvBias) qkv = tf.add(qkv, layer.qkvBias);
  const fused = fusedKernels();
  let result: { context: tf.Tensor2D; cache?: LayerCache };
  if (fused && input.steps > 1 && !input.past) result = fusedSequenceAttention(model, weights.folded, qkv, input);
  else if (fused && input.steps === 1 && weights.folded) {
    const { out, k, v } = fusedDecodeAttention(qkv, input.cosRows, input.sinRows, input.past, input.masks.keys(), model.dims);
    result = { context: out, cache: { k, v } };
  } else result = unfusedAttention(model, weights, qkv, input);
  let out = project(result.context, layer.o); // (B*T, d)
  if (layer.oBias) out = tf.add(out, layer.oBias);
  return { out, cache: input.withCache ? result.cache : undefined };
}

/** Many tokens, no cache, fused kernels: RoPE over q|k in place of the projection's layout, then attention. */
function fusedSequenceAttention(model: Model, folded: boolean, qkv: tf.Tensor2D, { batch, steps, cos, sin, cosRows, sinRows, masks, withCache }: AttentionInput): { context: tf.Tensor2D; cache?: LayerCache } {
  const { heads, kvHeads, headDim: hd } = model.dims;
  const rows = batch * steps;
  const roped = folded
    ? fusedRopeFolded(qkv, cosRows, sinRows, model.dims, hd)
    : (tf.reshape(fusedRope(tf.reshape(qkv, [batch, steps, heads + 2 * kvHeads, hd]) as tf.Tensor4D, cos, sin, heads + kvHeads), [rows, (heads + 2 * kvHeads) * hd]) as tf.Tensor2D);
  // Frozen q already carries the 1/sqrt(hd) scale.
  const context = fusedAttention(roped, masks.keys(), model.dims, folded ? 1 : 1 / Math.sqrt(hd));
  if (!withCache) return { context };
  const [, k, v] = tf.split(tf.reshape(roped, [batch, steps, heads + 2 * kvHeads, hd]), [heads, kvHeads, kvHeads], 2);
  const headsFirst = (t: tf.Tensor) => tf.transpose(t, [0, 2, 1, 3]) as tf.Tensor4D; // (B, Hkv, T, hd)
  return { context, cache: { k: headsFirst(k as tf.Tensor), v: headsFirst(v as tf.Tensor) } };
}

/** The tfjs-op path: any backend, a cache or not. */
function unfusedAttention(model: Model, { matmul, folded }: DerivedWeights, qkv: tf.Tensor2D, { batch, steps, cos, sin, masks, past }: AttentionInput): { context: tf.Tensor2D; cache: LayerCache } {
  const { heads, kvHeads, headDim: hd, group } = model.dims;
  const bias = masks.bias();
  let roped: tf.Tensor4D; // (B, T, H+Hkv, hd): q|k with RoPE applied
  let v: tf.Tensor; // (B, T, Hkv, hd)
  if (folded) {
    const [qk, values, rotated] = tf.split(tf.reshape(qkv, [batch, steps, 2 * heads + 3 * kvHeads, hd]), [heads + kvHeads, kvHeads, heads + kvHeads], 2);
    roped = tf.add(tf.mul(qk as tf.Tensor4D, cos), tf.mul(rotated as tf.Tensor4D, sin)); // x * cos + rotate_half(x) * sin
    v = values as tf.Tensor;
  } else {
    const [qk, values] = tf.split(tf.reshape(qkv, [batch, steps, heads + 2 * kvHeads, hd]), [heads + kvHeads, kvHeads], 2);
    roped = applyRope(qk as tf.Tensor4D, cos, sin, model.rope.rotate, matmul !== plainMatmul); // one rotation for q and k
    v = values as tf.Tensor;
  }
  const [q, k] = tf.split(roped, [heads, kvHeads], 2);
  // (B, T, Hkv, hd) -> (B, Hkv, T, hd); with T = 1 that is a reshape, which copies nothing.
  const headsFirst = (t: tf.Tensor) => (steps === 1 ? tf.reshape(t, [batch, kvHeads, 1, hd]) : tf.transpose(t, [0, 2, 1, 3])) as tf.Tensor4D;
  let keys = headsFirst(k as tf.Tensor); // (B, Hkv, T, hd)
  let values = headsFirst(v as tf.Tensor); // (B, Hkv, T, hd)
  if (past) {
    keys = tf.concat([past.k, keys], 2); // (B, Hkv, Tk, hd)
    values = tf.concat([past.v, values], 2);
  }
  const tk = keys.shape[2];
  const scale = folded ? 1 : 1 / Math.sqrt(hd); // frozen q already carries it
  let context: tf.Tensor2D; // (B*T, H*hd)
  if (steps === 1) {
    // One new token (decoding): broadcast products beat B*H tiny matmuls.
    const q5 = tf.reshape(q as tf.Tensor, [batch, kvHeads, group, 1, hd]); // head h uses kv head floor(h / G), as HF repeat_kv
    const dots = tf.sum(tf.mul(q5, tf.reshape(keys, [batch, kvHeads, 1, tk, hd])), -1); // (B, Hkv, G, Tk)
    const scores = scale === 1 ? dots : tf.mul(dots, scale);
    const probs = tf.softmax(tf.add(scores, tf.reshape(bias, [batch, 1, 1, tk])));
    const out = tf.sum(tf.mul(tf.reshape(probs, [batch, kvHeads, group, tk, 1]), tf.reshape(values, [batch, kvHeads, 1, tk, hd])), 3); // (B, Hkv, G, hd)
    context = tf.reshape(out, [batch, heads * hd]);
  } else {
    // Many tokens (training, prefill): plain 2-D matmuls, one pair per (batch, kv head), the G
    // query heads that share a kv head stacked as rows (see layers.ts for why 2-D).
    const qScaled = scale === 1 ? (q as tf.Tensor4D) : tf.mul(q as tf.Tensor4D, scale); // scaling q once beats scaling B*Hkv score blocks
    const qs = blocks(tf.reshape(tf.transpose(qScaled, [0, 2, 1, 3]), [batch * kvHeads, group * steps, hd])); // (G*T, hd) each
    const kts = blocks(tf.reshape(tf.transpose(keys, [0, 1, 3, 2]), [batch * kvHeads, hd, tk])); // (hd, Tk) each
    const vs = blocks(tf.reshape(values, [batch * kvHeads, tk, hd])); // (Tk, hd) each
    const biases = blocks(bias); // (G*T, Tk) each
    const outs: tf.Tensor2D[] = [];
    for (let i = 0; i < batch * kvHeads; i++) {
      const scores = tf.add(matmul(qs[i] as tf.Tensor2D, kts[i] as tf.Tensor2D), biases[Math.floor(i / kvHeads)] as tf.Tensor2D); // (G*T, Tk)
      outs.push(matmul(tf.softmax(scores) as tf.Tensor2D, vs[i] as tf.Tensor2D)); // (G*T, hd)
    }
    const stacked = tf.reshape(tf.stack(outs), [batch, heads, steps, hd]); // (B, H, T, hd)
    context = tf.reshape(tf.transpose(stacked, [0, 2, 1, 3]), [batch * steps, heads * hd]);
  }
  return { context, cache: { k: keys, v: values } };
}

/**
 * The 2-D blocks of a 3-D tensor. One block is a reshape: tfjs' Unpack gradient fails on a single
 * output ("Argument tensors passed to stack must be a Tensor[]"), which a batch of one row with one
 * kv head would hit.
 */
function blocks(t: tf.Tensor3D): tf.Tensor2D[] {
  return t.shape[0] === 1 ? [tf.reshape(t, t.shape.slice(1) as [number, number])] : (tf.unstack(t) as tf.Tensor2D[]);
}
