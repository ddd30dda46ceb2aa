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
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { modelDims, type ModelConfig } from '../config.ts';
import { MASKED, ropeTableValues } from '../layers.ts';
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

  /** A linear layer on (B, T, in): x @ W^T (+ b), W stored transposed to (in, out) for a plain MatMul. */
  const linear = (x: string, name: string, rows: number, cols: number, bias: boolean) => {
    const y = g.op('MatMul', [x, g.weight(`${name}.weight`, transpose(weight(`${name}.weight`), rows, cols), [cols, rows])]);
    return bias ? g.op('Add', [y, g.weight(`${name}.bias`, weight(`${name}.bias`), [rows])]) : y;
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
  const tables = ropeTableValues(config.max_position_embeddings, hd, config.rope_theta);
  const cos = g.op('Unsqueeze', [g.op('Gather', [g.weight('rope.cos', tables.cos, [config.max_position_embeddings, hd]), positionIds], { axis: 0 }), g.ints([1])]); // (B, 1, T, hd)
  const sin = g.op('Unsqueeze', [g.op('Gather', [g.weight('rope.sin', tables.sin, [config.max_position_embeddings, hd]), positionIds], { axis: 0 }), g.ints([1])]);
  /** x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1) (HF apply_rotary_pos_emb). */
  const rope = (x: string) => {
    const [x1, x2] = g.opMulti('Split', [x, g.ints([hd / 2, hd / 2])], { axis: -1 }, 2) as [string, string];
    const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 });
    return g.op('Add', [g.op('Mul', [x, cos]), g.op('Mul', [rotated, sin])]);
  };
  /** (B, T, n hd) -> (B, n, T, hd) */
  const headsFirst = (x: string, n: number) => g.op('Transpose', [g.op('Reshape', [x, g.ints([0, 0, n, hd])])], { perm: [0, 2, 1, 3] });

  const embed = g.weight('model.embed_tokens.weight', weight('model.embed_tokens.weight'), [config.vocab_size, d]);
  let x = g.op('Gather', [embed, inputIds], { axis: 0 }); // (B, T, d)
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    const h = rmsNorm(x, `${p}.input_layernorm.weight`);
    const q = g.op('Mul', [rope(headsFirst(linear(h, `${p}.self_attn.q_proj`, heads * hd, d, qkvBias), heads)), g.scalar(1 / Math.sqrt(hd))]); // (B, H, T, hd)
    const k = rope(headsFirst(linear(h, `${p}.self_attn.k_proj`, kvHeads * hd, d, qkvBias), kvHeads)); // (B, Hkv, T, hd)
    const v = headsFirst(linear(h, `${p}.self_attn.v_proj`, kvHeads * hd, d, qkvBias), kvHeads);
    const keys = g.op('Concat', [past[i]!.key, k], { axis: 2 }); // (B, Hkv, Tk, hd)
    const values = g.op('Concat', [past[i]!.value, v], { axis: 2 });
    g.output(keys, `present.${i}.key`, 'float', ['batch_size', kvHeads, 'total_sequence_length', hd]);
    g.output(values, `present.${i}.value`, 'float', ['batch_size', kvHeads, 'total_sequence_length', hd]);
    // Grouped-query attention without copying keys: query head h uses kv head floor(h / G) (HF
    // repeat_kv), so q regroups as (B, Hkv, G, T, hd) and MatMul broadcasts k, v over G.
    const qGrouped = g.op('Reshape', [q, g.ints([0, kvHeads, group, -1, hd])]);
    const keysT = g.op('Transpose', [g.op('Unsqueeze', [keys, g.ints([2])])], { perm: [0, 1, 2, 4, 3] }); // (B, Hkv, 1, hd, Tk)
    const scores = g.op('Add', [g.op('MatMul', [qGrouped, keysT]), bias]); // (B, Hkv, G, T, Tk)
    const context = g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }), g.op('Unsqueeze', [values, g.ints([2])])]); // (B, Hkv, G, T, hd)
    const merged = g.op('Reshape', [g.op('Transpose', [g.op('Reshape', [context, g.ints([0, heads, -1, hd])])], { perm: [0, 2, 1, 3] }), g.ints([0, 0, heads * hd])]); // (B, T, H hd)
    x = g.op('Add', [x, linear(merged, `${p}.self_attn.o_proj`, d, heads * hd, oBias)]);
    // SwiGLU (Shazeer 2020): down(silu(gate(h)) * up(h)).
    const h2 = rmsNorm(x, `${p}.post_attention_layernorm.weight`);
    const gate = linear(h2, `${p}.mlp.gate_proj`, config.intermediate_size, d, config.mlp_bias);
    const up = linear(h2, `${p}.mlp.up_proj`, config.intermediate_size, d, config.mlp_bias);
    const inner = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
    x = g.op('Add', [x, linear(inner, `${p}.mlp.down_proj`, d, config.intermediate_size, config.mlp_bias)]);
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
  if (exported.external) writeFileSync(join(folder, ONNX_DATA_FILE), Buffer.concat(exported.external));
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
