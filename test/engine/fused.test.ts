/**
 * The fused wasm kernels (packages/engine/src/runtime/fused.ts) against the unfused tfjs ops they replace:
 * values and gradients within 1e-5 on random inputs whose widths are not multiples of 4 (the SIMD
 * loops' scalar tails run too), and a tiny model's gradients the same either way.
 * Each gradient is of sum(f(x) * R) with a fixed random R, so every output element matters.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import { AdamW, accumulateGradients, adamWOptionsSchema, causalLmLoss, createModel, disposeModel, forward, initEngine, padBatch, presets, tokenLogprobs } from '../../packages/engine/src/index.ts';
import { fusedAttention, fusedKernels, fusedSwiGlu, setFusedKernels } from '../../packages/engine/src/runtime/fused.ts';
import { applyRope, attentionBias, linear, positionsFromMask, rmsNorm, ropeTables, rotateHalfMatrix, siluGate } from '../../packages/engine/src/model/layers.ts';
import { decode } from '../../packages/engine/src/model/model.ts';

const TOLERANCE = 1e-5;
let fusedLoaded = false;

beforeAll(async () => {
  const record = await initEngine({ backend: 'wasm' });
  fusedLoaded = record.fused_kernels === 'on';
});
afterEach(() => setFusedKernels(true));

const rng = new Rng(7, 'test/fused');
const random = (shape: number[], scale = 1) => tf.tensor(Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal() * scale), shape);

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  expect(a.shape).toEqual(b.shape);
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] as number);
}

/**
 * f's value and the gradients of sum(f(...inputs) * R) with respect to every input, fused and
 * unfused (`plain`, default f with the fused kernels off).
 */
function compare(inputs: tf.Tensor[], f: (...xs: tf.Tensor[]) => tf.Tensor, plainF = f): { value: number; grads: number[] } {
  const weightsOut = tf.tidy(() => random(f(...inputs).shape));
  const run = (fused: boolean) => {
    setFusedKernels(fused);
    expect(fusedKernels()).toBe(fused);
    const g = fused ? f : plainF;
    const value = g(...inputs);
    const grads = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(g(...xs), weightsOut)))(inputs);
    return { value, grads };
  };
  const fused = run(true);
  const plain = run(false);
  return { value: maxAbsDiff(fused.value, plain.value), grads: fused.grads.map((g, i) => maxAbsDiff(g, plain.grads[i]!)) };
}

/**
 * Causal grouped-query attention in plain tfjs ops, from the definition: softmax(scale q k^T +
 * bias) v per head, head h on kv head floor(h / G), bias from layers.ts attentionBias.
 */
function referenceAttention(qkv: tf.Tensor2D, keyMask: number[][], heads: number, kvHeads: number, scale: number): tf.Tensor2D {
  const [batch, steps] = [keyMask.length, keyMask[0]!.length];
  const hd = (qkv.shape[1] as number) / (heads + 2 * kvHeads);
  const [q, k, v] = tf.split(tf.reshape(qkv, [batch, steps, heads + 2 * kvHeads, hd]), [heads, kvHeads, kvHeads], 2);
  const kvOfHead = tf.tensor1d(Array.from({ length: heads }, (_, h) => Math.floor(h / (heads / kvHeads))), 'int32');
  const headsFirst = (t: tf.Tensor, perHead: boolean) => {
    const t4 = tf.transpose(t, [0, 2, 1, 3]);
    return perHead ? tf.gather(t4, kvOfHead, 1) : t4;
  };
  const scores = tf.add(tf.mul(tf.matMul(headsFirst(q!, false), headsFirst(k!, true), false, true), scale), tf.expandDims(attentionBias(keyMask, steps), 1));
  const out = tf.matMul(tf.softmax(scores), headsFirst(v!, true)); // (B, H, T, hd)
  return tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [batch * steps, heads * hd]) as tf.Tensor2D;
}

describe('fused wasm kernels equal the tfjs ops they replace', () => {
  it('are loaded on the wasm backend', () => {
    expect(fusedLoaded).toBe(true);
  });

  it.each([[5, 13], [16, 128]])('RMSNorm (%i x %i), with and without weight', (rows, cols) => {
    const x = random([rows, cols]);
    const w = random([cols], 0.5);
    const withWeight = compare([x, w], (xi, wi) => rmsNorm(xi as tf.Tensor2D, wi as tf.Tensor1D, 1e-6));
    expect(withWeight.value).toBeLessThanOrEqual(TOLERANCE);
    for (const g of withWeight.grads) expect(g).toBeLessThanOrEqual(TOLERANCE);
    setFusedKernels(true);
    const fusedPlain = rmsNorm(x as tf.Tensor2D, undefined, 1e-6);
    setFusedKernels(false);
    expect(maxAbsDiff(fusedPlain, rmsNorm(x as tf.Tensor2D, undefined, 1e-6))).toBeLessThanOrEqual(TOLERANCE);
  });

  it.each([[3, 7], [16, 352]])('SwiGLU gate (%i rows, inner %i)', (rows, inner) => {
    const h = random([rows, 2 * inner], 2);
    // swiglu() picks one of these two between its projections.
    const { value, grads } = compare([h], (hi) => (fusedKernels() ? fusedSwiGlu(hi as tf.Tensor2D) : siluGate(hi as tf.Tensor2D)));
    expect(value).toBeLessThanOrEqual(TOLERANCE);
    expect(grads[0]).toBeLessThanOrEqual(TOLERANCE);
  });

  it.each([[6, 11], [32, 512]])('token log-probabilities (%i rows, vocab %i)', (rows, vocab) => {
    const logits = random([rows, vocab], 3);
    const targets = tf.tensor1d(Array.from({ length: rows }, () => rng.int(vocab)), 'int32');
    const { value, grads } = compare([logits], (l) => tokenLogprobs(l as tf.Tensor2D, targets));
    expect(value).toBeLessThanOrEqual(TOLERANCE);
    expect(grads[0]).toBeLessThanOrEqual(TOLERANCE);
  });

  it.each([[2, 3, 3, 8], [2, 16, 6, 32]])('RoPE (B %i, T %i, heads %i, hd %i)', (batch, steps, heads, hd) => {
    const { cos, sin } = ropeTables(64, hd, 10000);
    const positions = tf.tensor1d(Array.from({ length: batch * steps }, () => rng.int(64)), 'int32');
    const c = tf.reshape(tf.gather(cos, positions), [batch, steps, 1, hd]) as tf.Tensor4D;
    const s = tf.reshape(tf.gather(sin, positions), [batch, steps, 1, hd]) as tf.Tensor4D;
    const rotate = rotateHalfMatrix(hd);
    const { value, grads } = compare([random([batch, steps, heads, hd])], (x) => applyRope(x as tf.Tensor4D, c, s, rotate));
    expect(value).toBeLessThanOrEqual(TOLERANCE);
    expect(grads[0]).toBeLessThanOrEqual(TOLERANCE);
  });

  // Shapes with every blocking tail: rows % 4, a partial last panel of 8 columns (out for the
  // forward product, in for the input gradient), in % 8 (weight gradient).
  it.each([[7, 13, 5], [64, 128, 352], [130, 16, 9]])('linear x W^T (%i rows, in %i, out %i)', (rows, inputs, outputs) => {
    // Weights at 1/sqrt(in), as initialised layers have them: outputs of order 1, where 1e-5 is
    // far above float32 rounding of either summation order.
    const { value, grads } = compare([random([rows, inputs]), random([outputs, inputs], 1 / Math.sqrt(inputs))], (x, w) => linear(x as tf.Tensor2D, w as tf.Tensor2D));
    expect(value).toBeLessThanOrEqual(TOLERANCE);
    for (const g of grads) expect(g).toBeLessThanOrEqual(TOLERANCE);
  });

  // T 37: three blocks of queries (the kernel takes 16 at a time), the last one partial.
  it.each([[2, 7, 4, 2, 6], [3, 16, 3, 1, 32], [1, 9, 2, 2, 8], [2, 37, 4, 2, 12]])('causal attention (B %i, T %i, H %i, Hkv %i, hd %i), right padding', (batch, steps, heads, kvHeads, hd) => {
    const qkv = random([batch * steps, (heads + 2 * kvHeads) * hd]);
    // Row b keeps steps - 2b real tokens, then padding (as padBatch pads training rows).
    const keyMask = Array.from({ length: batch }, (_, b) => Array.from({ length: steps }, (_, t) => (t < steps - 2 * b ? 1 : 0)));
    const scale = 1 / Math.sqrt(hd);
    const maskTensor = tf.tensor2d(keyMask);
    const { value, grads } = compare(
      [qkv],
      (x) => fusedAttention(x as tf.Tensor2D, maskTensor, { heads, kvHeads }, scale),
      (x) => referenceAttention(x as tf.Tensor2D, keyMask, heads, kvHeads, scale),
    );
    expect(value).toBeLessThanOrEqual(TOLERANCE);
    expect(grads[0]).toBeLessThanOrEqual(TOLERANCE);
  });

  it('causal attention: a query that sees no key (left padding) gets zeros and passes no gradient', () => {
    const [heads, kvHeads, hd, steps] = [2, 1, 4, 5];
    const qkv = random([steps, (heads + 2 * kvHeads) * hd]);
    const mask = tf.tensor2d([[0, 0, 1, 1, 1]]);
    const out = fusedAttention(qkv as tf.Tensor2D, mask, { heads, kvHeads }, 0.5).arraySync();
    // Queries 0 and 1 see only keys 0..1, both padding.
    expect(out[0]!.every((x) => x === 0) && out[1]!.every((x) => x === 0)).toBe(true);
    expect(out[2]!.some((x) => x !== 0)).toBe(true);
    // Query 2 sees key 2 only: its output is v_2 exactly (softmax over one key), per head.
    const v2 = (qkv.arraySync() as number[][])[2]!.slice((heads + kvHeads) * hd);
    for (let h = 0; h < heads; h++) out[2]!.slice(h * hd, (h + 1) * hd).forEach((x, j) => expect(x).toBeCloseTo(v2[j]!, 6));
    // Their query columns get no gradient; query 2's do not either (one key: the softmax is constant).
    const weightsOut = random([steps, heads * hd]);
    const dqkv = tf.grad((x) => tf.sum(tf.mul(fusedAttention(x as tf.Tensor2D, mask, { heads, kvHeads }, 0.5), weightsOut)))(qkv).arraySync() as number[][];
    for (const t of [0, 1, 2]) expect(dqkv[t]!.slice(0, heads * hd).every((x) => x === 0)).toBe(true);
    expect(dqkv[3]!.slice(0, heads * hd).some((x) => x !== 0)).toBe(true);
  });

  it('frozen weights: scoring and decoding with a cache give the same logits fused and unfused (left padding)', () => {
    const config = presets.tiny(61, { num_hidden_layers: 2, max_position_embeddings: 32 });
    const model = createModel(config, new Rng(4, 'engine/init'));
    const prompts = [[5, 9, 2, 7, 1, 3], [0, 0, 4, 8, 6, 2], [0, 0, 0, 0, 11, 12]]; // leading 0s are padding
    const mask = prompts.map((row, b) => row.map((_, t) => (t >= [0, 2, 4][b]! ? 1 : 0)));
    const next = [[3, 4, 5], [6, 7, 8], [9, 10, 11]]; // three decoding steps, one token per row each
    const logitsOf = (fused: boolean) => {
      setFusedKernels(fused);
      const real: number[][] = [];
      const scored = forward(model, prompts, { attentionMask: mask, frozen: true }).logits.arraySync();
      scored.forEach((row, b) => row.forEach((l, t) => mask[b]![t] && real.push(l)));
      let keyMask: number[][] = mask;
      let step = decode(model, prompts, keyMask.map((row) => positionsFromMask([row])[0]!), keyMask, undefined, { frozen: true });
      for (let s = 0; s < next[0]!.length; s++) {
        keyMask = keyMask.map((row) => [...row, 1]);
        const positions = keyMask.map((row) => [row.reduce((a, b) => a + b, 0) - 1]);
        step = decode(model, next.map((row) => [row[s]!]), positions, keyMask, step.cache, { frozen: true });
        real.push(...(step.lmHead(step.hidden).arraySync()));
      }
      return tf.tensor2d(real);
    };
    expect(maxAbsDiff(logitsOf(true), logitsOf(false))).toBeLessThanOrEqual(TOLERANCE);
    disposeModel(model);
  });

  it('AdamW with clipping: three steps give the same parameters and moments', async () => {
    const shapes = [[7, 5], [13], [64, 33]];
    const start = shapes.map((shape) => random(shape));
    const gradients = [0, 1, 2].map(() => shapes.map((shape) => random(shape, 3)));
    const train = async (fused: boolean) => {
      setFusedKernels(fused);
      const params = new Map(start.map((t, i) => [`p${i}`, tf.variable(t.clone())]));
      const opt = new AdamW(params, adamWOptionsSchema.parse({}));
      // Norms around 30 against a max of 1: every step clips.
      const norms: number[] = [];
      for (const gs of gradients) norms.push(await opt.clipAndApply(new Map(gs.map((g, i) => [`p${i}`, g])), 1e-2, 1));
      return { params: [...params.values()], m: [...opt.m.values()], v: [...opt.v.values()], norms };
    };
    const fused = await train(true);
    const plain = await train(false);
    fused.norms.forEach((n, i) => expect(n).toBeCloseTo(plain.norms[i]!, 3));
    for (const key of ['params', 'm', 'v'] as const) fused[key].forEach((t, i) => expect(maxAbsDiff(t, plain[key][i]!)).toBeLessThanOrEqual(TOLERANCE));
  });

  it('a tiny model: same loss and gradient for every parameter', async () => {
    // Gradients, not parameters after a step: AdamW's first step is lr * g / (|g| + eps), which
    // turns a 1e-9 difference in a near-zero gradient into a difference of order lr.
    const config = presets.tiny(61, { num_hidden_layers: 2, max_position_embeddings: 32 });
    const ids = Array.from({ length: 3 }, () => Array.from({ length: 17 }, () => rng.int(61)));
    const batch = padBatch(ids.map((row, i) => ({ ids: row.slice(0, 17 - i), lossMask: row.slice(0, 17 - i).map((_, t) => (t > 4 ? 1 : 0)) })));
    const model = createModel(config, new Rng(3, 'engine/init'));
    const gradients = (fused: boolean) => {
      setFusedKernels(fused);
      return accumulateGradients(model, [batch], (b) => causalLmLoss(model, b));
    };
    const fused = await gradients(true);
    const plain = await gradients(false);
    expect(fused.loss).toBeCloseTo(plain.loss, 5);
    for (const [name, g] of fused.grads) expect(maxAbsDiff(g, plain.grads.get(name)!), name).toBeLessThanOrEqual(TOLERANCE);
    disposeModel(model);
  });
});
