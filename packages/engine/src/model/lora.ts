/**
 * LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"): a frozen weight W
 * (out, in) plus a trained low-rank update, y = x W^T + (alpha / r) · dropout(x) A^T B^T (§4.1,
 * eq. 3), with A (r, in) and B (out, r). As PEFT: A ~ kaiming_uniform(a = sqrt(5)), which is
 * U(-1/sqrt(in), 1/sqrt(in)), and B = 0, so a fresh adapter leaves the model's outputs unchanged.
 *
 * Options and files use PEFT's names (`r`, `lora_alpha`, `lora_dropout`, `target_modules`;
 * `adapter_config.json` + `adapter_model.safetensors` with tensors named
 * `base_model.model.<module>.lora_A.weight`), so `PeftModel.from_pretrained(base, dir)` loads them.
 * Exporting merges: W' = W + (alpha / r) · B A (§4.1, "no additional inference latency").
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { RandomSource } from '../host.ts';
import { fusedLinear, fusedMatMulNN } from '../runtime/fused.ts';
import { linear, partsProjection, timesTransposed, type Projection } from './layers.ts';
import { loraOptionsSchema, type LoraOptions } from './lora-options.ts';
import type { Adapter, DerivedWeights, LoraState, Model } from './model-types.ts';
import { readSafetensors, writeSafetensors } from '../io/safetensors.ts';

export { LORA_TARGETS, loraOptionsSchema, type LoraOptions } from './lora-options.ts';
type Target = LoraOptions['target_modules'][number];

export type { Adapter, LoraState } from './model-types.ts';

/** `base_model.model.<module>.lora_A.weight`: PEFT's saved name (the adapter name `default` left out). */
export const peftName = (module: string, matrix: 'A' | 'B') => `base_model.model.${module}.lora_${matrix}.weight`;

const modulePath = (layer: number, target: Target) => `model.layers.${layer}.${MODULE_GROUP[target]}.${target}`;

const MODULE_GROUP: Record<Target, string> = {
  q_proj: 'self_attn',
  k_proj: 'self_attn',
  v_proj: 'self_attn',
  o_proj: 'self_attn',
  gate_proj: 'mlp',
  up_proj: 'mlp',
  down_proj: 'mlp',
};

let adapterSets = 0;

/**
 * Freezes the model's weights and adds adapters on `target_modules` of every layer. A is drawn in
 * JS from `rng` (the same on every backend), B is zero.
 */
export function addLora(model: Model, options: LoraOptions, rng: RandomSource): void {
  if (model.lora) throw new Error('addLora: the model already has adapters');
  // tfjs variable names are global: each adapter set gets its own prefix.
  const prefix = `lora${adapterSets++}/`;
  const adapters = new Map<string, Adapter>();
  for (let i = 0; i < model.config.num_hidden_layers; i++) {
    for (const target of options.target_modules) {
      const module = modulePath(i, target);
      const weight = model.params.get(`${module}.weight`);
      if (!weight) throw new Error(`Internal error: model has no ${module}.weight`);
      const [out, inputs] = weight.shape as [number, number];
      const bound = 1 / Math.sqrt(inputs);
      const a = new Float32Array(options.r * inputs);
      for (let j = 0; j < a.length; j++) a[j] = (2 * rng.next() - 1) * bound;
      adapters.set(module, {
        a: tf.variable(tf.tensor2d(a, [options.r, inputs]), true, prefix + peftName(module, 'A')),
        b: tf.variable(tf.zeros<tf.Rank.R2>([out, options.r]), true, prefix + peftName(module, 'B')),
      });
    }
  }
  model.lora = { options, scaling: options.lora_alpha / options.r, adapters, dropoutSeed: Math.floor(rng.next() * 2 ** 31) };
}

/**
 * The base model under adapters, sharing its weights (no second copy): a reference model for KL
 * terms. Free it with releaseFrozenWeights, never disposeModel (the weights are the policy's).
 */
export function withoutAdapters(model: Model): Model {
  return { ...model, lora: undefined, frozen: undefined };
}

/** What training updates: the adapters (PEFT names) when the model has them, else every parameter. */
export function trainableParams(model: Model): Map<string, tf.Variable> {
  if (!model.lora) return model.params;
  const trainable = new Map<string, tf.Variable>();
  for (const [module, { a, b }] of model.lora.adapters) {
    trainable.set(peftName(module, 'A'), a);
    trainable.set(peftName(module, 'B'), b);
  }
  return trainable;
}

/** Every variable the model's outputs depend on (parameters, then adapters). */
export function modelVariables(model: Model): tf.Variable[] {
  return model.lora ? [...model.params.values(), ...trainableParams(model).values()] : [...model.params.values()];
}

/** W + (alpha / r) · B A for an HF weight name with an adapter, else W itself. Differentiable. */
export function mergedWeight(model: Model, name: string): tf.Tensor {
  const w = model.params.get(name);
  if (!w) throw new Error(`Internal error: model has no parameter ${name}`);
  const adapter = model.lora?.adapters.get(name.replace(/\.weight$/, ''));
  if (!adapter) return w;
  return tf.add(w, tf.mul(tf.matMul(adapter.b, adapter.a), model.lora!.scaling));
}

/** The weights `saveModel` writes: every parameter, adapters merged in (caller disposes the merged ones). */
export function exportWeights(model: Model): Map<string, tf.Tensor> {
  const weights = new Map<string, tf.Tensor>();
  for (const name of model.params.keys()) weights.set(name, tf.tidy(() => mergedWeight(model, name)));
  return weights;
}

/**
 * x W^T for a weight whose gradient is not wanted: the gradient goes to x only. `linear` computes
 * dW for every call (a custom gradient returns all of its gradients), which for a frozen base is
 * as much work as full fine-tuning.
 */
const frozenLinear: Projection = (x, weight) =>
  (tf.customGrad(((input: tf.Tensor, save: tf.GradSaveFunc) => {
    save([weight]); // saved, or the forward pass's tidy would free a derived weight before backprop
    return {
      value: timesTransposed(input as tf.Tensor2D, weight),
      // dy W in the fused kernel when there is one: tfjs' MatMul has XNNPACK pack a copy of W per call,
      // which at Qwen2.5-0.5B's size (2 GB of frozen weights) runs tfjs-wasm's 4 GB heap out.
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => (fusedLinear() ? fusedMatMulNN(dy as tf.Tensor2D, saved[0] as tf.Tensor2D) : tf.matMul(dy as tf.Tensor2D, saved[0] as tf.Tensor2D)),
    };
  }) as never) as unknown as (input: tf.Tensor2D) => tf.Tensor2D)(x);

/**
 * The training-time weights of a model with adapters: base projections frozen, and each fused
 * projection (q|k|v, o, gate|up, down) plus its adapters' outputs, zeros for untargeted parts.
 */
export function withAdapters(model: Model, weights: DerivedWeights): DerivedWeights {
  const lora = model.lora;
  if (!lora) return weights;
  const deltas = new Map<tf.Tensor, Array<{ out: number; adapter?: Adapter }>>();
  weights.layers.forEach((layer, i) => {
    const parts = (fused: tf.Tensor2D, names: Target[]) => {
      const modules = names.map((n) => modulePath(i, n));
      if (!modules.some((m) => lora.adapters.has(m))) return;
      deltas.set(fused, modules.map((m) => ({ out: model.params.get(`${m}.weight`)!.shape[0], adapter: lora.adapters.get(m) })));
    };
    parts(layer.qkv, ['q_proj', 'k_proj', 'v_proj']);
    parts(layer.o, ['o_proj']);
    parts(layer.gateUp, ['gate_proj', 'up_proj']);
    parts(layer.down, ['down_proj']);
  });
  const frozenBase = partsProjection(weights.parts, frozenLinear);
  const project: Projection = (x, weight) => {
    const base = frozenBase(x, weight);
    const targets = deltas.get(weight);
    if (!targets) return base;
    const input = dropout(lora, x);
    const rows = x.shape[0];
    // (N, out) per part: scaling · (x A^T) B^T, or zeros where the part has no adapter.
    const outs = targets.map(({ out, adapter }) => (adapter ? tf.mul(linear(linear(input, adapter.a), adapter.b), lora.scaling) : tf.zeros([rows, out])));
    return tf.add(base, outs.length === 1 ? outs[0]! : tf.concat(outs, 1)) as tf.Tensor2D;
  };
  return { ...weights, project };
}

function dropout(lora: LoraState, x: tf.Tensor2D): tf.Tensor2D {
  const rate = lora.options.lora_dropout;
  if (rate === 0 || !lora.training) return x;
  const seed = `${lora.dropoutSeed}/${lora.training.step}/${lora.training.calls++}`;
  return tf.dropout(x, rate, undefined, seed) as tf.Tensor2D;
}

export interface AdapterFiles {
  /** The folder of the base model, as `base_model_name_or_path`. */
  baseModel: string;
}

/** Writes `adapter_config.json` and `adapter_model.safetensors` as PEFT's save_pretrained does. */
export async function saveAdapter(model: Model, dir: string, files: AdapterFiles): Promise<void> {
  const lora = model.lora;
  if (!lora) throw new Error('saveAdapter: the model has no adapters');
  mkdirSync(dir, { recursive: true });
  const config = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: files.baseModel,
    r: lora.options.r,
    lora_alpha: lora.options.lora_alpha,
    lora_dropout: lora.options.lora_dropout,
    target_modules: [...lora.options.target_modules].sort(),
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: null,
    use_rslora: false,
    use_dora: false,
  };
  writeFileSync(join(dir, 'adapter_config.json'), `${JSON.stringify(config, null, 2)}\n`);
  await writeSafetensors(join(dir, 'adapter_model.safetensors'), trainableParams(model) as Map<string, tf.Tensor>);
}

/**
 * Reads a PEFT adapter folder into a model without adapters (the base it was trained on). `rng`
 * seeds the adapters' dropout should they train further (the pipeline passes
 * `new Rng(0, 'engine/lora-load')`).
 */
export function loadAdapter(model: Model, dir: string, rng: RandomSource): void {
  const configPath = join(dir, 'adapter_config.json');
  if (!existsSync(configPath)) throw new Error(`${dir}: not an adapter folder (no adapter_config.json)`);
  const raw = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
  if (raw.peft_type !== 'LORA') throw new Error(`${configPath}: key peft_type must be "LORA", found ${JSON.stringify(raw.peft_type)}`);
  const parsed = loraOptionsSchema.safeParse({ r: raw.r, lora_alpha: raw.lora_alpha, lora_dropout: raw.lora_dropout, target_modules: raw.target_modules });
  if (!parsed.success) throw new Error(`${configPath}: ${parsed.error.issues.map((i) => `key ${i.path.join('.')}: ${i.message}`).join('; ')}`);
  addLora(model, parsed.data, rng);
  const tensors = readSafetensors(join(dir, 'adapter_model.safetensors'));
  try {
    for (const [name, variable] of trainableParams(model)) {
      const t = tensors.get(name);
      if (!t || !tf.util.arraysEqual(t.shape, variable.shape)) {
        throw new Error(`${join(dir, 'adapter_model.safetensors')}: tensor ${name} ${t ? `has shape [${t.shape}], expected [${variable.shape}]` : 'is missing'}`);
      }
      variable.assign(t);
    }
  } finally {
    tf.dispose([...tensors.values()]);
  }
}

/** Bytes each kind of parameter holds while training with AdamW in float32. */
export interface MemoryPerParameter {
  frozen: { parameters: number; bytesEach: number };
  trainable: { parameters: number; bytesEach: number };
  totalBytes: number;
}

/**
 * Frozen parameters hold their float32 value (4 B); trainable ones also a gradient and AdamW's two
 * moments (16 B). Activations come on top and scale with batch x sequence, not with parameters.
 */
export function memoryPerParameter(model: Model): MemoryPerParameter {
  const count = (vs: Iterable<tf.Variable>) => [...vs].reduce((n, v) => n + v.size, 0);
  const trainable = count(trainableParams(model).values());
  const frozen = model.lora ? count(model.params.values()) : 0;
  return { frozen: { parameters: frozen, bytesEach: 4 }, trainable: { parameters: trainable, bytesEach: 16 }, totalBytes: 4 * frozen + 16 * trainable };
}

export function describeMemory(m: MemoryPerParameter): string {
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  return (
    `memory: ${m.frozen.parameters} frozen x 4 B (weight) + ${m.trainable.parameters} trainable x 16 B ` +
    `(weight, gradient, AdamW m and v) = ${mib(m.totalBytes)} before activations`
  );
}
