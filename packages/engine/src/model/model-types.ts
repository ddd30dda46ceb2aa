/**
 * The model's data types: the model (model.ts builds and runs it), its weights as the layers use
 * them, its key/value cache and its LoRA adapters (lora.ts). Apart from the code so the modules
 * that share them (model.ts, attention.ts, lora.ts) need not import each other for a type.
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { ModelConfig, ModelDims } from './config.ts';
import type { GenerationConfig } from '../generate/generation-config.ts';
import type { Matmul, Projection } from './layers.ts';
import type { LoraOptions } from './lora-options.ts';

export interface Model {
  config: ModelConfig;
  dims: ModelDims;
  /** HF tensor name -> trainable variable, in `parameterShapes` order. */
  params: Map<string, tf.Variable>;
  rope: { cos: tf.Tensor2D; sin: tf.Tensor2D; rotate: tf.Tensor2D };
  /** LoRA adapters (lora.ts): when present only they train, and frozen calls use merged weights. */
  lora?: LoraState;
  /** The folder's generation_config.json (checkpoint.ts): end ids and sampling defaults, written back on save. */
  generation?: GenerationConfig;
  /** Derived weights for gradient-free calls, valid while every variable keeps `dataIds`. */
  frozen?: { dataIds: object[]; weights: DerivedWeights; derived: tf.Tensor[] };
}

/**
 * What the layers multiply by, derived from the params with q|k|v and gate|up fused into one
 * projection each. Trainable: HF layout (out, in), applied by `linear`. Frozen: transposed once to
 * (in, out) and applied by plain tf.matMul. Shapes below in HF layout.
 */
export interface LayerWeights {
  /** Absent when folded into qkv (frozen). */
  inputNorm?: tf.Tensor1D;
  /** ((H + 2 Hkv) hd, d); frozen: (d, (2H + 3Hkv) hd), the q|k outputs once more, pre-rotated (see frozenWeights). */
  qkv: tf.Tensor2D;
  qkvBias?: tf.Tensor1D;
  o: tf.Tensor2D; // (d, H hd)
  oBias?: tf.Tensor1D;
  /** Absent when folded into gateUp (frozen). */
  postNorm?: tf.Tensor1D;
  gateUp: tf.Tensor2D; // (2 I, d)
  gateUpBias?: tf.Tensor1D;
  down: tf.Tensor2D; // (d, I)
  downBias?: tf.Tensor1D;
}

export interface DerivedWeights {
  /** How a projection weight is applied: `linear` (trainable) or plain tf.matMul (frozen, pre-transposed). */
  project: Projection;
  /** The attention products: matmul2d (differentiable) or plain tf.matMul (frozen). */
  matmul: Matmul;
  embed: tf.Tensor2D; // (V, d)
  layers: LayerWeights[];
  /** Absent when folded into head (frozen). */
  finalNorm?: tf.Tensor1D;
  head: tf.Tensor2D; // (V, d): lm_head, or the embedding when tied
  /** Frozen: q already carries the 1/sqrt(hd) attention scale, and qkv yields rotate_half(q|k) too. */
  folded: boolean;
  /**
   * Unfused weights (a frozen base, see model.ts deriveWeights' `fuse`): `qkv` and `gateUp` are then
   * their first part's weight, standing for the parts listed here, whose outputs `project` concatenates.
   */
  parts?: Map<tf.Tensor, tf.Tensor2D[]>;
}

/** Keys and values of one layer for every position seen so far: (B, Hkv, Tk, hd) each. */
export interface LayerCache {
  k: tf.Tensor4D;
  v: tf.Tensor4D;
}

export interface Adapter {
  a: tf.Variable<tf.Rank.R2>; // (r, in)
  b: tf.Variable<tf.Rank.R2>; // (out, r)
}

export interface LoraState {
  options: LoraOptions;
  /** lora_alpha / r */
  scaling: number;
  /** HF module path (`model.layers.0.self_attn.q_proj`) -> adapter. */
  adapters: Map<string, Adapter>;
  /** Seeds the dropout masks: a pure function of (seed, optimizer step, call), so a resumed run draws the same masks. */
  dropoutSeed: number;
  /** Set by trainStep: dropout is on only while gradients are taken, keyed by the optimizer step. */
  training?: { step: number; calls: number };
}
