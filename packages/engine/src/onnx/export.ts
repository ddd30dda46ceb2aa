/**
 * Export of the engine's Llama / Qwen2 decoder to ONNX in the decoder-with-past layout that Hugging
 * Face Optimum writes and `@huggingface/transformers` loads:
 *   inputs  input_ids (B, T) int64, attention_mask (B, P + T) int64, position_ids (B, T) int64,
 *           past_key_values.{i}.key / .value (B, Hkv, P, hd) float32
 *   outputs logits (B, T, V), present.{i}.key / .value (B, Hkv, P + T, hd)
 * P = 0 (empty past tensors) runs a prompt or a teacher-forced sequence; P > 0 decodes with the cache.
 *
 * Standard ONNX ops only (opset 17), written so ONNX Runtime's graph optimiser recognises them:
 * RMSNorm as Pow -> ReduceMean -> Add -> Sqrt -> Div -> Mul (fused to SimplifiedLayerNormalization).
 * Shape comments use B batch, T new tokens, P past tokens, Tk = P + T, d width, H query heads,
 * Hkv key/value heads, G = H / Hkv, hd head width, I SwiGLU width, V vocab.
 */
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { modelDims, ropeScalingOf, type ModelConfig } from '../model/config.ts';
import { MASKED, ropeTableValues } from '../model/layers.ts';
import { GraphBuilder } from './graph.ts';

export const ONNX_DIR = 'onnx';
export const ONNX_MODEL_FILE = 'model.onnx';
/** The side file for weights when they are too large to sit inside the protobuf (Optimum's name). */
export const ONNX_DATA_FILE = 'model.onnx_data';
const OPSET = 17;

/** A parameter's values by HF tensor name, in HF layout (linear weights (out, in)). */
export type WeightSource = (name: string) => Float32Array;

export interface ExportOptions {
  /** Total weight bytes from which weights go to `model.onnx_data`; default 1 GiB. */
  externalThreshold?: number;
}

export interface ExportedModel {
  /** The ModelProto bytes: what `onnx/model.onnx` holds, or what a session loads from memory. */
  model: Uint8Array;
  /** Bytes of `model.onnx_data` when the weights are external. */
  external?: Uint8Array[];
}

/** Builds the ONNX decoder for `config` with the weights `weight` returns. */
export function exportDecoder(config: ModelConfig, weight: WeightSource, options: ExportOptions = {}): ExportedModel {
  const g = new GraphBuilder();
  const { heads, kvHeads, headDim: hd, group, qkvBias, oBias } = modelDims(config);
  const d = config.hidden_size;
  const layers = config.num_hidden_layers;

  const inputIds = g.input('input_ids', 'int64', ['batch_size', 'sequence_length']);
  const attentionMask = g.input('attention_mask', 'int64', ['batch_size', 'total_sequence_length']);
  const positionIds = g.input('position_ids', 'int64', ['batch_size', 'sequence_length']);
  const past = Array.from({ length: layers }, (_, i) => ({
    key: g.input(`past_key_values.${i}.key`, 'float', ['batch_size', kvHeads, 'past_sequence_length', hd]),
    value: g.input(`past_key_values.${i}.value`, 'float', ['batch_size', kvHeads, 'past_sequence_length', hd]),
  }));

  /** x @ W^T (+ b) on (B, T, in) for an HF-layout (out, in) weight, stored transposed to (in, out) for a plain MatMul. */
  const linear = (x: string, name: string, w: Float32Array, rows: number, cols: number, b?: Float32Array) => {
    const y = g.op('MatMul', [x, g.weight(`${name}.weight`, transpose(w, rows, cols), [cols, rows])]);
    return b ? g.op('Add', [y, g.weight(`${name}.bias`, b, [rows])]) : y;
  };
  /** RMSNorm (Zhang & Sennrich 2019) as HF Llama: x / sqrt(mean(x^2) + eps) * w, over the last axis. */
  const rmsNorm = (x: string, name: string) => {
    const meanSquare = g.op('ReduceMean', [g.op('Pow', [x, g.scalar(2)])], { axes: [-1], keepdims: 1 }); // (B, T, 1)
    const normed = g.op('Div', [x, g.op('Sqrt', [g.op('Add', [meanSquare, g.scalar(config.rms_norm_eps)])])]);
    return g.op('Mul', [normed, g.weight(name, weight(name), [d])]);
  };

  // The additive attention bias (B, 1, 1, T, Tk), shared by every layer: MASKED where key j lies
  // after query i (j > P + i) or is padding, else 0 (as layers.ts attentionBias).
  const steps = g.op('Gather', [g.op('Shape', [inputIds]), g.ints([1], [])], { axis: 0 }); // scalar T
  const total = g.op('Gather', [g.op('Shape', [attentionMask]), g.ints([1], [])], { axis: 0 }); // scalar Tk
  const keyIndex = g.op('Range', [g.ints([0], []), total, g.ints([1], [])]); // (Tk)
  const queryIndex = g.op('Unsqueeze', [g.op('Range', [g.op('Sub', [total, steps]), total, g.ints([1], [])]), g.ints([1])]); // (T, 1): P + i
  const future = g.op('Greater', [keyIndex, queryIndex]); // (T, Tk)
  const padding = g.op('Unsqueeze', [g.op('Equal', [attentionMask, g.ints([0], [])]), g.ints([1, 2, 3])]); // (B, 1, 1, 1, Tk)
  const bias = g.op('Where', [g.op('Or', [future, padding]), g.scalar(MASKED), g.scalar(0)]); // (B, 1, 1, T, Tk)

  // RoPE tables as HF computes them (inv_freq_i = theta^(-2i/hd), cat(angles, angles)), gathered per token.
  const tables = ropeTableValues(config.max_position_embeddings, hd, config.rope_theta, ropeScalingOf(config));
  const cos = g.op('Unsqueeze', [g.op('Gather', [g.weight('rope.cos', tables.cos, [config.max_position_embeddings, hd]), positionIds], { axis: 0 }), g.ints([2])]); // (B, T, 1, hd)
  const sin = g.op('Unsqueeze', [g.op('Gather', [g.weight('rope.sin', tables.sin, [config.max_position_embeddings, hd]), positionIds], { axis: 0 }), g.ints([2])]);
  const headsFirst = (x: string) => g.op('Transpose', [x], { perm: [0, 2, 1, 3] }); // (B, T, n, hd) -> (B, n, T, hd)

  const embed = g.weight('model.embed_tokens.weight', weight('model.embed_tokens.weight'), [config.vocab_size, d]);
  let x = g.op('Gather', [embed, inputIds], { axis: 0 }); // (B, T, d)
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    const h = rmsNorm(x, `${p}.input_layernorm.weight`);
    // One projection for q|k|v and rotate_half(q|k) (see attentionProjection), so RoPE (HF
    // apply_rotary_pos_emb: x cos + rotate_half(x) sin) is two Muls and an Add for q and k at once.
    const projection = attentionProjection(weight, p, { heads, kvHeads, hd, d, bias: qkvBias });
    const qkv = g.op('Reshape', [linear(h, `${p}.self_attn.qkv_rotary`, projection.weight, projection.rows, d, projection.bias), g.ints([0, 0, 2 * heads + 3 * kvHeads, hd])]); // (B, T, 2H + 3Hkv, hd)
    const [qk, vNew, rotated] = g.opMulti('Split', [qkv, g.ints([heads + kvHeads, kvHeads, heads + kvHeads])], { axis: 2 }, 3) as [string, string, string];
    const roped = headsFirst(g.op('Add', [g.op('Mul', [qk, cos]), g.op('Mul', [rotated, sin])])); // (B, H + Hkv, T, hd)
    const [q, k] = g.opMulti('Split', [roped, g.ints([heads, kvHeads])], { axis: 1 }, 2) as [string, string]; // q: (B, H, T, hd), scaled by 1/sqrt(hd)
    const v = headsFirst(vNew); // (B, Hkv, T, hd)
    const cacheShape = ['batch_size', kvHeads, 'total_sequence_length', hd];
    const keys = g.output(g.op('Concat', [past[i]!.key, k], { axis: 2 }), `present.${i}.key`, 'float', cacheShape); // (B, Hkv, Tk, hd)
    const values = g.output(g.op('Concat', [past[i]!.value, v], { axis: 2 }), `present.${i}.value`, 'float', cacheShape);
    // Grouped-query attention without copying keys: query head h uses kv head floor(h / G) (HF
    // repeat_kv), so q regroups as (B, Hkv, G, T, hd) and MatMul broadcasts k, v over G.
    const qGrouped = g.op('Reshape', [q, g.ints([0, kvHeads, group, -1, hd])]);
    const keysT = g.op('Transpose', [g.op('Unsqueeze', [keys, g.ints([2])])], { perm: [0, 1, 2, 4, 3] }); // (B, Hkv, 1, hd, Tk)
    const scores = g.op('Add', [g.op('MatMul', [qGrouped, keysT]), bias]); // (B, Hkv, G, T, Tk)
    const context = g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }), g.op('Unsqueeze', [values, g.ints([2])])]); // (B, Hkv, G, T, hd)
    const merged = g.op('Reshape', [g.op('Transpose', [g.op('Reshape', [context, g.ints([0, heads, -1, hd])])], { perm: [0, 2, 1, 3] }), g.ints([0, 0, heads * hd])]); // (B, T, H hd)
    const o = `${p}.self_attn.o_proj`;
    x = g.op('Add', [x, linear(merged, o, weight(`${o}.weight`), d, heads * hd, oBias ? weight(`${o}.bias`) : undefined)]);
    // SwiGLU (Shazeer 2020): down(silu(gate(h)) * up(h)), gate and up as one projection.
    const h2 = rmsNorm(x, `${p}.post_attention_layernorm.weight`);
    const inner = config.intermediate_size;
    const m = `${p}.mlp`;
    const gateUpBias = config.mlp_bias ? concat([weight(`${m}.gate_proj.bias`), weight(`${m}.up_proj.bias`)]) : undefined;
    const gateUp = linear(h2, `${m}.gate_up_proj`, concat([weight(`${m}.gate_proj.weight`), weight(`${m}.up_proj.weight`)]), 2 * inner, d, gateUpBias);
    const [gate, up] = g.opMulti('Split', [gateUp, g.ints([inner, inner])], { axis: -1 }, 2) as [string, string];
    const activated = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
    x = g.op('Add', [x, linear(activated, `${m}.down_proj`, weight(`${m}.down_proj.weight`), d, inner, config.mlp_bias ? weight(`${m}.down_proj.bias`) : undefined)]);
  }
  const final = rmsNorm(x, 'model.norm.weight');
  // A tied head multiplies by the embedding's transpose; the runtime folds the Transpose once at load.
  const head = config.tie_word_embeddings
    ? g.op('Transpose', [embed], { perm: [1, 0] })
    : g.weight('lm_head.weight', transpose(weight('lm_head.weight'), config.vocab_size, d), [d, config.vocab_size]);
  g.output(g.op('MatMul', [final, head]), 'logits', 'float', ['batch_size', 'sequence_length', config.vocab_size]);
  return g.encode({
    opset: OPSET,
    producer: 'lore-pipeline',
    docString: `${config.architectures[0]} decoder with past (inputs input_ids, attention_mask, position_ids, past_key_values.*)`,
    externalFile: ONNX_DATA_FILE,
    externalThreshold: options.externalThreshold,
  });
}

/** Writes `onnx/model.onnx` (and `onnx/model.onnx_data` when external) under `dir`; returns the model path. */
export function writeExportedModel(dir: string, exported: ExportedModel): string {
  const folder = join(dir, ONNX_DIR);
  mkdirSync(folder, { recursive: true });
  // Chunk by chunk: one concatenated Buffer would be a second copy of every weight (2 GB at 0.5B).
  if (exported.external) {
    const fd = openSync(join(folder, ONNX_DATA_FILE), 'w');
    try {
      for (const chunk of exported.external) writeSync(fd, chunk);
    } finally {
      closeSync(fd);
    }
  }
  const path = join(folder, ONNX_MODEL_FILE);
  writeFileSync(path, exported.model);
  return path;
}

/** (rows, cols) row-major -> (cols, rows). */
function transpose(values: Float32Array, rows: number, cols: number): Float32Array {
  if (values.length !== rows * cols) throw new Error(`Internal error: expected ${rows}x${cols} values, found ${values.length}`);
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c] as number;
  return out;
}

/**
 * The fused attention input projection of one layer, HF layout (out, in): rows q | k | v |
 * rotate_half(q) | rotate_half(k), with q's rows (both) times 1/sqrt(hd), the attention scale.
 * rotate_half(x W^T) = x (R W)^T for the row permutation R (row j of a head takes -row j + hd/2
 * below the middle, row j - hd/2 above), so the rotated outputs are more rows of the same matmul.
 * As the tfjs engine's frozen weights (model.ts frozenWeights) fold them.
 */
function attentionProjection(
  weight: WeightSource,
  layer: string,
  { heads, kvHeads, hd, d, bias }: { heads: number; kvHeads: number; hd: number; d: number; bias: boolean },
): { weight: Float32Array; bias?: Float32Array; rows: number } {
  const scale = 1 / Math.sqrt(hd);
  const part = (name: string, suffix: 'weight' | 'bias') => weight(`${layer}.self_attn.${name}_proj.${suffix}`);
  const fuse = (suffix: 'weight' | 'bias', width: number) => {
    const q = scaled(part('q', suffix), scale);
    const k = part('k', suffix);
    return concat([q, k, part('v', suffix), rotateHalfRows(q, heads, hd, width), rotateHalfRows(k, kvHeads, hd, width)]);
  };
  return { weight: fuse('weight', d), bias: bias ? fuse('bias', 1) : undefined, rows: (2 * heads + 3 * kvHeads) * hd };
}

/** rotate_half over the output rows of (n hd, width) values: per head, cat(-rows[half:], rows[:half]). */
function rotateHalfRows(values: Float32Array, n: number, hd: number, width: number): Float32Array {
  const half = hd / 2;
  const out = new Float32Array(values.length);
  for (let h = 0; h < n; h++) {
    for (let j = 0; j < hd; j++) {
      const from = (h * hd + (j < half ? j + half : j - half)) * width;
      const sign = j < half ? -1 : 1;
      for (let c = 0; c < width; c++) out[(h * hd + j) * width + c] = sign * (values[from + c] as number);
    }
  }
  return out;
}

function scaled(values: Float32Array, factor: number): Float32Array {
  return values.map((v) => v * factor);
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
