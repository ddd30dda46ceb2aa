/**
 * A Llama / Qwen2 decoder on TensorFlow.js, parameters keyed by their Hugging Face tensor names
 * (`model.layers.0.self_attn.q_proj.weight`) in HF layout (linear weights are (out, in)).
 * Reads top to bottom like nanoGPT's model.py: embed -> N x (norm, attention, norm, SwiGLU) ->
 * norm -> lm_head. Shape comments use B batch, T new tokens, Tk keys (past + new), d width,
 * H query heads, Hkv key/value heads, G = H / Hkv, hd head width, V vocab.
 */
import * as tf from '@tensorflow/tfjs-core';
import { modelDims, ropeScalingOf, type ModelConfig, type ModelDims } from './config.ts';
import type { RandomSource } from '../host.ts';
import { attention, attentionMasks } from './attention.ts';
import { addAndNorm, linear, matmul2d, plainMatmul, positionsFromMask, rmsNorm, ropeTables, rotateHalfMatrix, swiglu, timesTransposed, partsProjection, type Matmul, type Projection } from './layers.ts';
import { maskedCrossEntropy } from './loss.ts';
import { mergedWeight, modelVariables, withAdapters } from './lora.ts';
import type { DerivedWeights, LayerCache, LayerWeights, Model } from './model-types.ts';

export type { DerivedWeights, LayerCache, LayerWeights, Model } from './model-types.ts';

export interface ForwardOptions {
  /** (B, T), 1 for real tokens and 0 for padding; default all ones. */
  attentionMask?: number[][];
  /** Reuse cached derived weights: faster, but no gradient reaches the parameters (reference models, eval). */
  frozen?: boolean;
}

export interface ForwardOutput {
  /** (B, T, V) */
  logits: tf.Tensor3D;
}

/** Every parameter's HF name and shape, in the order HF lists them. */
export function parameterShapes(config: ModelConfig): Array<[string, number[]]> {
  const { heads, kvHeads, headDim, qkvBias, oBias } = modelDims(config);
  const d = config.hidden_size;
  const inner = config.intermediate_size;
  const shapes: Array<[string, number[]]> = [['model.embed_tokens.weight', [config.vocab_size, d]]];
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const p = `model.layers.${i}`;
    shapes.push([`${p}.input_layernorm.weight`, [d]]);
    for (const [name, out] of [['q_proj', heads * headDim], ['k_proj', kvHeads * headDim], ['v_proj', kvHeads * headDim]] as const) {
      shapes.push([`${p}.self_attn.${name}.weight`, [out, d]]);
      if (qkvBias) shapes.push([`${p}.self_attn.${name}.bias`, [out]]);
    }
    shapes.push([`${p}.self_attn.o_proj.weight`, [d, heads * headDim]]);
    if (oBias) shapes.push([`${p}.self_attn.o_proj.bias`, [d]]);
    shapes.push([`${p}.post_attention_layernorm.weight`, [d]]);
    for (const [name, shape] of [['gate_proj', [inner, d]], ['up_proj', [inner, d]], ['down_proj', [d, inner]]] as const) {
      shapes.push([`${p}.mlp.${name}.weight`, [...shape]]);
      if (config.mlp_bias) shapes.push([`${p}.mlp.${name}.bias`, [shape[0]]]);
    }
  }
  shapes.push(['model.norm.weight', [d]]);
  if (!config.tie_word_embeddings) shapes.push(['lm_head.weight', [config.vocab_size, d]]);
  return shapes;
}

export function parameterCount(model: Model): number {
  let total = 0;
  for (const v of model.params.values()) total += v.size;
  return total;
}

let modelCounter = 0;

/**
 * Wraps named weights into a model. tfjs variable names are global, so each model gets its own
 * prefix; `params` keys stay the HF names. Takes ownership of `weights`.
 */
export function modelFromWeights(config: ModelConfig, weights: Map<string, tf.Tensor>): Model {
  const prefix = `m${modelCounter++}/`;
  const params = new Map<string, tf.Variable>();
  const missing: string[] = [];
  for (const [name, shape] of parameterShapes(config)) {
    const w = weights.get(name);
    if (!w) {
      missing.push(name);
      continue;
    }
    if (!tf.util.arraysEqual(w.shape, shape)) {
      throw new Error(`weight ${name}: expected shape [${shape}] from config, found [${w.shape}]`);
    }
    const initial = w.dtype === 'float32' ? w : tf.cast(w, 'float32');
    params.set(name, tf.variable(initial, true, prefix + name));
    // The variable shares the tensor's data (a reference count): drop the cast's own reference here;
    // the caller's tensors are released below, so disposeModel frees the whole model.
    if (initial !== w) initial.dispose();
  }
  // The model owns what it was given from here: a weight left referenced would keep its data alive
  // after disposeModel (a 0.5B model's 2 GB in the wasm heap per load, which eval, loading each
  // checkpoint in turn, ran out of).
  for (const w of weights.values()) w.dispose();
  if (missing.length > 0) {
    for (const v of params.values()) v.dispose();
    throw new Error(`missing weights (${missing.length}): ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`);
  }
  const dims = modelDims(config);
  const tables = ropeTables(config.max_position_embeddings, dims.headDim, config.rope_theta, ropeScalingOf(config));
  return { config, dims, params, rope: { ...tables, rotate: rotateHalfMatrix(dims.headDim) } };
}

/**
 * A freshly initialised model, deterministic given the seed on every backend (values drawn in JS):
 * HF init, normal(0, initializer_range) for matrices, ones for norms, zeros for biases.
 * (The pipeline's stages pass `new Rng(seed, 'engine/init')`.)
 */
export function createModel(config: ModelConfig, rng: RandomSource): Model {
  const weights = new Map<string, tf.Tensor>();
  for (const [name, shape] of parameterShapes(config)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    if (name.endsWith('norm.weight')) values.fill(1);
    else if (!name.endsWith('.bias')) for (let i = 0; i < size; i++) values[i] = rng.normal() * config.initializer_range;
    weights.set(name, tf.tensor(values, shape));
  }
  return modelFromWeights(config, weights);
}

export function disposeModel(model: Model): void {
  for (const v of modelVariables(model)) v.dispose();
  tf.dispose([model.rope.cos, model.rope.sin, model.rope.rotate]);
  releaseFrozenWeights(model);
}

/** Frees the cached derived weights (they are rebuilt on the next frozen call). */
export function releaseFrozenWeights(model: Model): void {
  if (model.frozen) tf.dispose(model.frozen.derived);
  model.frozen = undefined;
}

function param(model: Model, name: string): tf.Tensor {
  const p = model.params.get(name);
  if (!p) throw new Error(`Internal error: model has no parameter ${name}`);
  return p;
}
const vector = (model: Model, name: string) => param(model, name) as tf.Tensor1D;
const optional = (model: Model, name: string) => model.params.get(name) as tf.Tensor1D | undefined;
const concatBiases = (biases: Array<tf.Tensor1D | undefined>) =>
  biases.every((b) => b === undefined) ? undefined : (tf.concat(biases as tf.Tensor1D[]) as tf.Tensor1D);

/**
 * Derives the layer weights from params; differentiable (gradients flow back to params). `merge`
 * adds LoRA updates into the projection weights (W + scale B A); without it adapters are left to
 * `withAdapters`.
 */
function deriveWeights(model: Model, merge = false, fuse = true): DerivedWeights {
  const { config } = model;
  const matrix = (m: Model, name: string) => (merge ? mergedWeight(m, name) : param(m, name)) as tf.Tensor2D;
  const layers: LayerWeights[] = [];
  const parts = fuse ? undefined : new Map<tf.Tensor, tf.Tensor2D[]>();
  // Fused: one (out, in) copy stacking the parts. Unfused: the first part stands for all of them.
  const stack = (weights: tf.Tensor2D[]) => {
    if (!parts) return tf.concat(weights, 0);
    parts.set(weights[0]!, weights);
    return weights[0]!;
  };
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const a = `model.layers.${i}.self_attn`;
    const m = `model.layers.${i}.mlp`;
    layers.push({
      inputNorm: vector(model, `model.layers.${i}.input_layernorm.weight`),
      // Stacking (out, in) weights along out is a contiguous copy; its gradient, contiguous slices.
      qkv: stack([matrix(model, `${a}.q_proj.weight`), matrix(model, `${a}.k_proj.weight`), matrix(model, `${a}.v_proj.weight`)]),
      qkvBias: concatBiases([optional(model, `${a}.q_proj.bias`), optional(model, `${a}.k_proj.bias`), optional(model, `${a}.v_proj.bias`)]),
      o: matrix(model, `${a}.o_proj.weight`),
      oBias: optional(model, `${a}.o_proj.bias`),
      postNorm: vector(model, `model.layers.${i}.post_attention_layernorm.weight`),
      gateUp: stack([matrix(model, `${m}.gate_proj.weight`), matrix(model, `${m}.up_proj.weight`)]),
      gateUpBias: concatBiases([optional(model, `${m}.gate_proj.bias`), optional(model, `${m}.up_proj.bias`)]),
      down: matrix(model, `${m}.down_proj.weight`),
      downBias: optional(model, `${m}.down_proj.bias`),
    });
  }
  const embed = param(model, 'model.embed_tokens.weight') as tf.Tensor2D;
  return {
    project: linear,
    matmul: matmul2d,
    embed,
    layers,
    finalNorm: vector(model, 'model.norm.weight'),
    head: config.tie_word_embeddings ? embed : (param(model, 'lm_head.weight') as tf.Tensor2D),
    folded: false,
    parts,
  };
}


/**
 * The weights for gradient-free calls (generation, reference log-probs), prepared once so decoding
 * runs fewer, plainer ops (each tfjs op costs tens of microseconds, which is what a decode step is
 * made of): transposed to (in, out) for plain 2-D matmuls (tfjs-wasm also reuses its packed copy of
 * an operand that stays the same tensor: 4x faster at decode sizes); RMSNorm weights folded into
 * the projection that follows (diag(w) W^T); the attention scale folded into q; and RoPE's
 * rotate_half folded in as extra q|k output columns (x W^T R). Rebuilt when any variable changed
 * (an optimizer assign gives it a new dataId).
 */
function frozenWeights(model: Model): DerivedWeights {
  const dataIds = modelVariables(model).map((v) => v.dataId);
  const current = model.frozen;
  if (current && current.dataIds.every((id, i) => id === dataIds[i])) return current.weights;
  releaseFrozenWeights(model);
  const { heads, kvHeads, headDim: hd } = model.dims;
  const d = model.config.hidden_size;
  const weights = tf.tidy(() => {
    const hf = deriveWeights(model, true);
    // (d, out) with row j scaled by norm[j]: x_normed (.) w @ W^T = x_normed @ (diag(w) W^T).
    const foldNorm = (w: tf.Tensor2D, norm: tf.Tensor1D | undefined) => {
      const wT = tf.transpose(w);
      return norm ? (tf.mul(wT, tf.reshape(norm, [d, 1])) as tf.Tensor2D) : wT;
    };
    // Columns (or bias entries) of the q outputs times 1/sqrt(hd); k and v unchanged.
    const qScale = tf.tensor1d([...new Array<number>(heads * hd).fill(1 / Math.sqrt(hd)), ...new Array<number>(2 * kvHeads * hd).fill(1)]);
    // rotate_half applied per head to the q|k outputs: (rows, (H + Hkv) hd) -> same shape.
    const rotateQk = (t: tf.Tensor2D) => {
      const rows = t.shape[0];
      const qk = tf.slice(t, [0, 0], [rows, (heads + kvHeads) * hd]);
      return tf.reshape(tf.matMul(tf.reshape(qk, [rows * (heads + kvHeads), hd]) as tf.Tensor2D, model.rope.rotate), [rows, (heads + kvHeads) * hd]) as tf.Tensor2D;
    };
    const layers = hf.layers.map((l) => {
      const qkvT = tf.mul(foldNorm(l.qkv, l.inputNorm), qScale) as tf.Tensor2D; // (d, (H + 2Hkv) hd)
      const bias = l.qkvBias ? (tf.mul(l.qkvBias, qScale) as tf.Tensor1D) : undefined;
      return {
        ...l,
        inputNorm: undefined,
        qkv: tf.concat([qkvT, rotateQk(qkvT)], 1),
        qkvBias: bias ? (tf.concat([bias, tf.reshape(rotateQk(tf.reshape(bias, [1, -1]) as tf.Tensor2D), [-1])]) as tf.Tensor1D) : undefined,
        o: tf.transpose(l.o),
        postNorm: undefined,
        gateUp: foldNorm(l.gateUp, l.postNorm),
        down: tf.transpose(l.down),
      };
    });
    return {
      ...hf,
      project: plainMatmul,
      matmul: plainMatmul,
      layers,
      finalNorm: undefined,
      head: foldNorm(hf.head, hf.finalNorm),
      folded: true,
    } as unknown as tf.TensorContainer;
  }) as unknown as DerivedWeights;
  // Keep what was derived past any enclosing tidy; the parameters themselves stay the model's.
  const params = new Set<tf.Tensor>(model.params.values());
  const derived = collectTensors(weights).filter((t) => !params.has(t));
  for (const t of derived) tf.keep(t);
  model.frozen = { dataIds, weights, derived };
  return weights;
}

/**
 * Models whose float32 weights pass this keep no cached frozen copies: those copies are as large
 * as the weights, and Qwen2.5-0.5B's 2 GB twice is past tfjs-wasm's 4 GB heap with training's
 * activations. Such models run gradient-free calls on their HF-layout weights (adapters merged),
 * derived per call; their generation belongs on onnxruntime (inference.ts), not tfjs.
 */
export const frozenCache = { maxBytes: 2 ** 30 };

function cachesFrozenWeights(model: Model): boolean {
  let bytes = 0;
  for (const v of model.params.values()) bytes += 4 * v.size;
  return bytes <= frozenCache.maxBytes;
}

/** The HF-layout weights (adapters merged, q|k|v and gate|up not stacked) applied without a gradient, freed by the caller's tidy. */
function uncachedFrozenWeights(model: Model): DerivedWeights {
  const weights = deriveWeights(model, true, false);
  return { ...weights, project: partsProjection(weights.parts, timesTransposed), matmul: plainMatmul };
}

function collectTensors(value: unknown, into: tf.Tensor[] = []): tf.Tensor[] {
  if (value instanceof tf.Tensor) into.push(value);
  else if (Array.isArray(value)) for (const v of value) collectTensors(v, into);
  else if (value && typeof value === 'object') for (const v of Object.values(value)) collectTensors(v, into);
  return into;
}

/**
 * Runs the decoder over `ids` (B, T) at the given positions, attending causally to `cache` (past
 * keys) plus the new tokens, except where `keyMask` (B, Tk) is 0. Returns the final-norm hidden
 * states (B*T, d), the cache extended by these tokens (empty with `withCache: false`), and `lmHead`: hidden (N, d) -> logits (N, V)
 * (lm_head, or the embedding when tied).
 */
export function decode(
  model: Model,
  ids: number[][],
  positions: number[][],
  keyMask: number[][],
  cache?: LayerCache[],
  options: { frozen?: boolean; withCache?: boolean } = {},
): { hidden: tf.Tensor2D; cache: LayerCache[]; lmHead: (hidden: tf.Tensor2D) => tf.Tensor2D } {
  const { config } = model;
  checkTokenIds(ids, config.vocab_size);
  // A frozen base (LoRA) is not stacked into q|k|v and gate|up copies: at 0.5B those are 0.94 GB.
  const weights = options.frozen ? (cachesFrozenWeights(model) ? frozenWeights(model) : uncachedFrozenWeights(model)) : withAdapters(model, deriveWeights(model, false, !model.lora));
  const batch = ids.length;
  const steps = ids[0]?.length ?? 0;
  const masks = attentionMasks(keyMask, steps, model.dims.group);
  const withCache = options.withCache ?? true;
  let x = tf.gather(weights.embed, tf.tensor1d(ids.flat(), 'int32')) as tf.Tensor2D; // (B*T, d)
  const flatPositions = tf.tensor1d(positions.flat(), 'int32');
  const cosRows = tf.gather(model.rope.cos, flatPositions) as tf.Tensor2D; // (B*T, hd)
  const sinRows = tf.gather(model.rope.sin, flatPositions) as tf.Tensor2D;
  const cos = tf.reshape(cosRows, [batch, steps, 1, model.dims.headDim]) as tf.Tensor4D; // (B, T, 1, hd)
  const sin = tf.reshape(sinRows, [batch, steps, 1, model.dims.headDim]) as tf.Tensor4D;
  const newCache: LayerCache[] = [];
  const eps = config.rms_norm_eps;
  // x is the residual stream, normed its RMSNorm that the next sublayer reads.
  let normed = rmsNorm(x, weights.layers.length > 0 ? weights.layers[0]!.inputNorm : weights.finalNorm, eps);
  weights.layers.forEach((layer, i) => {
    const attn = attention(model, layer, weights, { x: normed, batch, steps, cos, sin, cosRows, sinRows, masks, past: cache?.[i], withCache });
    if (attn.cache) newCache.push(attn.cache);
    ({ sum: x, normed } = addAndNorm(x, attn.out, layer.postNorm, eps, !weights.folded));
    const mlp = swiglu(normed, layer.gateUp, layer.down, weights.project, layer.gateUpBias, layer.downBias);
    const next = i + 1 < weights.layers.length ? weights.layers[i + 1]!.inputNorm : weights.finalNorm;
    ({ sum: x, normed } = addAndNorm(x, mlp, next, eps, !weights.folded));
  });
  return { hidden: normed, cache: newCache, lmHead: (h) => weights.project(h, weights.head) };
}

/** An out-of-range id would make tf.gather read garbage silently on wasm: refuse it by row and position. */
export function checkTokenIds(ids: number[][], vocabSize: number): void {
  ids.forEach((row, b) =>
    row.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new Error(`token id ${id} at row ${b}, position ${t} is outside the vocabulary [0, ${vocabSize})`);
      }
    }),
  );
}

/** Checks a batch's shape and runs the decoder over it; the hidden states are (B*T, d). */
function decodeBatch(model: Model, inputIds: number[][], options: ForwardOptions) {
  const steps = inputIds[0]?.length ?? 0;
  const mask = options.attentionMask ?? inputIds.map((row) => row.map(() => 1));
  if (inputIds.some((row) => row.length !== steps)) throw new Error('forward: every row of inputIds must have the same length (pad them)');
  if (steps > model.config.max_position_embeddings) {
    throw new Error(`forward: sequence length ${steps} exceeds max_position_embeddings ${model.config.max_position_embeddings}`);
  }
  return decode(model, inputIds, positionsFromMask(mask), mask, undefined, { frozen: options.frozen, withCache: false });
}

/**
 * Full-sequence forward. ids (B, T) (pad however the mask says: left padding for prompts, right
 * padding for training). Positions follow the mask (HF: cumsum(mask) - 1), so a left-padded row
 * gives the same logits at its real tokens as the unpadded row.
 */
export function forward(model: Model, inputIds: number[][], options: ForwardOptions = {}): ForwardOutput {
  const { hidden, lmHead } = decodeBatch(model, inputIds, options);
  return { logits: tf.reshape(lmHead(hidden), [inputIds.length, inputIds[0]?.length ?? 0, model.config.vocab_size]) as tf.Tensor3D };
}

/**
 * The final-norm hidden states (B, T, d): what the LM head reads, and what an embedding pools
 * (stages/lib/retrieval/embedding.ts). Same padding and position rules as `forward`.
 */
export function hiddenStates(model: Model, inputIds: number[][], options: ForwardOptions = {}): tf.Tensor3D {
  const { hidden } = decodeBatch(model, inputIds, options);
  return tf.reshape(hidden, [inputIds.length, inputIds[0]?.length ?? 0, model.config.hidden_size]) as tf.Tensor3D;
}

/**
 * Logits (N, V) at the given flat positions (row b, position t is b * T + t) only. Training and
 * teacher-forced scoring need logits where a completion token is predicted, a third of a prompted
 * sequence or less, and the LM head with its log-softmax is the widest product of a small model
 * (HF's `logits_to_keep` does the same for the last positions).
 */
export function logitsAt(model: Model, inputIds: number[][], positions: readonly number[], options: ForwardOptions = {}): tf.Tensor2D {
  const { hidden, lmHead } = decodeBatch(model, inputIds, options);
  return lmHead(tf.gather(hidden, tf.tensor1d(positions as number[], 'int32')) as tf.Tensor2D);
}

/**
 * Cross-entropy of ids[:, 1:] under the logits at [:, :-1], over the targets where lossMask[:, 1:]
 * is 1 (completion tokens; token 0 is never a target): the mean, or with `reduction: 'sum'` the sum,
 * which token-weighted accumulation divides itself. A mask with no 1s gives 0.
 */
export function maskedLmLoss(
  model: Model,
  inputIds: number[][],
  lossMask: number[][],
  options: ForwardOptions & { reduction?: 'mean' | 'sum' } = {},
): tf.Scalar {
  const steps = inputIds[0]?.length ?? 0;
  const positions: number[] = [];
  const targets: number[] = [];
  lossMask.forEach((row, b) => {
    for (let t = 1; t < steps; t++) {
      if (row[t] !== 1) continue;
      positions.push(b * steps + t - 1); // position t - 1 predicts token t
      targets.push(inputIds[b]![t]!);
    }
  });
  if (positions.length === 0) return tf.scalar(0);
  const logits = logitsAt(model, inputIds, positions, options);
  return maskedCrossEntropy(logits, tf.tensor1d(targets, 'int32'), tf.ones([targets.length]) as tf.Tensor1D, options.reduction ?? 'mean');
}
