/**
 * LoRA on the qwen2-tiny fixture (qkv bias, tied embeddings, one kv head). Reference numbers:
 * test/engine/reference/qwen2-tiny/lora.json, written by an independent PyTorch implementation
 * (`/usr/bin/python3 test/engine/reference/reference.py lora test/engine/reference`).
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import { frozenCache } from '../../packages/engine/src/model/model.ts';
import {
  AdamW,
  addLora,
  causalLmLoss,
  disposeModel,
  forward,
  initEngine,
  loadAdapter,
  loadModel,
  loadTrainingState,
  loraOptionsSchema,
  maskedLmLoss,
  memoryPerParameter,
  padBatch,
  readSafetensors,
  saveAdapter,
  saveModel,
  saveTrainingState,
  trainableParams,
  trainStep,
  type Model,
} from '../../packages/engine/src/index.ts';

interface LoraReference {
  r: number;
  lora_alpha: number;
  target_modules: Array<'q_proj' | 'v_proj' | 'down_proj'>;
  adapters: Record<string, { shape: number[]; values: number[] }>;
  loss: number;
  grads: Record<string, number[]>;
}

const fixture = join(import.meta.dirname, 'reference', 'qwen2-tiny');
const reference = JSON.parse(readFileSync(join(fixture, 'lora.json'), 'utf8')) as LoraReference;
const parity = JSON.parse(readFileSync(join(fixture, 'reference.json'), 'utf8')) as { input_ids: number[][]; loss_mask: number[][] };
const options = loraOptionsSchema.parse({ r: reference.r, lora_alpha: reference.lora_alpha, target_modules: reference.target_modules });

beforeAll(async () => {
  await initEngine({ backend: 'wasm' });
});

/** The fixture with adapters set to the reference's values. */
function referenceModel(): Model {
  const model = loadModel(fixture);
  addLora(model, options, new Rng(1));
  for (const [name, variable] of trainableParams(model)) {
    const { shape, values } = reference.adapters[name]!;
    variable.assign(tf.tensor(values, shape));
  }
  return model;
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)));
  return worst;
};

describe('LoRA adapters', () => {
  it('a fresh adapter (B = 0) leaves the logits unchanged, trained and frozen paths alike', async () => {
    const model = loadModel(fixture);
    const before = await forward(model, parity.input_ids).logits.data();
    addLora(model, options, new Rng(1));
    // A is random (so the test is not vacuous): only B = 0 keeps the output.
    expect(Math.max(...(await trainableParams(model).get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')!.data()).map(Math.abs))).toBeGreaterThan(0.01);
    expect(maxAbsDiff(await forward(model, parity.input_ids).logits.data(), before)).toBe(0);
    expect(maxAbsDiff(await forward(model, parity.input_ids, { frozen: true }).logits.data(), before)).toBeLessThan(1e-5);
    disposeModel(model);
  });

  it('a model past frozenCache.maxBytes keeps no frozen copies and gives the adapted logits from its HF-layout weights', async () => {
    const model = referenceModel();
    const adapted = await forward(model, parity.input_ids).logits.data();
    const limit = frozenCache.maxBytes;
    frozenCache.maxBytes = 0; // every model is "large"
    try {
      expect(maxAbsDiff(await forward(model, parity.input_ids, { frozen: true }).logits.data(), adapted)).toBeLessThan(1e-5);
      expect(model.frozen).toBeUndefined();
    } finally {
      frozenCache.maxBytes = limit;
    }
    await forward(model, parity.input_ids, { frozen: true }).logits.data();
    expect(model.frozen).toBeDefined(); // under the limit the copies are cached, as before
    disposeModel(model);
  });

  it('loss and adapter gradients match the PyTorch reference; the base gets none', async () => {
    const model = referenceModel();
    const trainable = trainableParams(model);
    // One adapter pair per target module per layer, under PEFT's names.
    expect([...trainable.keys()].sort()).toEqual(Object.keys(reference.adapters).sort());
    const { value, grads } = tf.variableGrads(() => maskedLmLoss(model, parity.input_ids, parity.loss_mask), [...trainable.values()]);
    expect(Math.abs((await value.data())[0]! - reference.loss)).toBeLessThan(1e-5);
    for (const [name, variable] of trainable) {
      const want = reference.grads[name]!;
      const scale = Math.max(...want.map(Math.abs));
      expect(maxAbsDiff(await grads[variable.name]!.data(), want) / scale, name).toBeLessThan(1e-4);
    }
    // A training step moves the adapters and leaves every base weight bit for bit.
    const base = await Promise.all([...model.params.values()].map((v) => v.data()));
    const adapters = await Promise.all([...trainable.values()].map((v) => v.data()));
    const optimizer = new AdamW(trainable, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0 });
    const batch = padBatch(parity.input_ids.map((ids, i) => ({ ids, lossMask: parity.loss_mask[i]! })));
    await trainStep(model, optimizer, [batch], (b) => causalLmLoss(model, b), { lr: 1e-2, maxGradNorm: 1 });
    const after = await Promise.all([...model.params.values()].map((v) => v.data()));
    after.forEach((values, i) => expect(maxAbsDiff(values, base[i]!)).toBe(0));
    const moved = await Promise.all([...trainable.values()].map((v) => v.data()));
    expect(Math.max(...moved.map((values, i) => maxAbsDiff(values, adapters[i]!)))).toBeGreaterThan(1e-3);
    optimizer.dispose();
    disposeModel(model);
  });

  it('exports merged weights W + (alpha / r) B A, and a saved adapter reloads under PEFT names', async () => {
    const model = referenceModel();
    const dir = mkdtempSync(join(tmpdir(), 'lora-'));
    await saveModel(model, join(dir, 'merged'));
    const merged = readSafetensors(join(dir, 'merged', 'model.safetensors'));
    const base = readSafetensors(join(fixture, 'model.safetensors'));
    // By hand: out[i][j] = W[i][j] + (8 / 4) * sum_k B[i][k] A[k][j], for q_proj of layer 1.
    const module = 'model.layers.1.self_attn.q_proj';
    const a = reference.adapters[`base_model.model.${module}.lora_A.weight`]!;
    const b = reference.adapters[`base_model.model.${module}.lora_B.weight`]!;
    const [out, r] = b.shape as [number, number];
    const inputs = a.shape[1]!;
    const w = await base.get(`${module}.weight`)!.data();
    const expected = Array.from({ length: out * inputs }, (_, index) => {
      const [i, j] = [Math.floor(index / inputs), index % inputs];
      let sum = 0;
      for (let k = 0; k < r; k++) sum += b.values[i * r + k]! * a.values[k * inputs + j]!;
      return w[index]! + (reference.lora_alpha / reference.r) * sum;
    });
    expect(maxAbsDiff(await merged.get(`${module}.weight`)!.data(), expected)).toBeLessThan(1e-6);
    // Modules without adapters are the base weights unchanged.
    expect(maxAbsDiff(await merged.get('model.layers.1.self_attn.k_proj.weight')!.data(), await base.get('model.layers.1.self_attn.k_proj.weight')!.data())).toBe(0);
    // The merged folder, loaded as a plain model, gives the adapted model's logits.
    const adapted = await forward(model, parity.input_ids).logits.data();
    const plain = loadModel(join(dir, 'merged'));
    expect(maxAbsDiff(await forward(plain, parity.input_ids).logits.data(), adapted)).toBeLessThan(1e-4);

    await saveAdapter(model, join(dir, 'adapter'), { baseModel: fixture });
    const config = JSON.parse(readFileSync(join(dir, 'adapter', 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: ['down_proj', 'q_proj', 'v_proj'], bias: 'none' });
    expect([...readSafetensors(join(dir, 'adapter', 'adapter_model.safetensors')).keys()].sort()).toEqual(Object.keys(reference.adapters).sort());
    const reloaded = loadModel(fixture);
    loadAdapter(reloaded, join(dir, 'adapter'), new Rng(0, 'engine/lora-load'));
    expect(maxAbsDiff(await forward(reloaded, parity.input_ids).logits.data(), adapted)).toBe(0);
    for (const m of [model, plain, reloaded]) disposeModel(m);
  });

  it('counts memory per parameter: 4 B frozen, 16 B trainable', () => {
    const model = referenceModel();
    const memory = memoryPerParameter(model);
    // qwen2-tiny (d 32, 4 heads of 12, 1 kv head, SwiGLU 48): q (48 x 32), v (12 x 32), down
    // (32 x 48); with r = 4, A (4, in) + B (out, 4): (128 + 192) + (128 + 48) + (192 + 128) = 816 per layer.
    expect(memory.trainable.parameters).toBe(2 * 816);
    expect(memory.frozen.parameters).toBe([...model.params.values()].reduce((n, v) => n + v.size, 0));
    expect(memory.totalBytes).toBe(4 * memory.frozen.parameters + 16 * 2 * 816);
    disposeModel(model);
  });

  it('training with dropout resumed from a step checkpoint ends where an uninterrupted run ends', async () => {
    const withDropout = { ...options, lora_dropout: 0.1 };
    const batch = padBatch(parity.input_ids.map((ids, i) => ({ ids, lossMask: parity.loss_mask[i]! })));
    const start = () => {
      const model = loadModel(fixture);
      addLora(model, withDropout, new Rng(3));
      return { model, optimizer: new AdamW(trainableParams(model), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 }) };
    };
    const run = async (m: { model: Model; optimizer: AdamW }, steps: number) => {
      for (let i = 0; i < steps; i++) await trainStep(m.model, m.optimizer, [batch], (b) => causalLmLoss(m.model, b), { lr: 1e-2, maxGradNorm: 1 });
    };
    const straight = start();
    await run(straight, 4);
    const first = start();
    await run(first, 2);
    const dir = mkdtempSync(join(tmpdir(), 'lora-resume-'));
    await saveTrainingState(dir, first.model, first.optimizer);
    const resumed = start();
    loadTrainingState(dir, resumed.model, resumed.optimizer);
    await run(resumed, 2);
    const values = (m: Model) => Promise.all([...trainableParams(m).values()].map((v) => v.data()));
    const [want, got] = [await values(straight.model), await values(resumed.model)];
    want.forEach((w, i) => expect(maxAbsDiff(got[i]!, w)).toBe(0));
    // Dropout did change the run: the same steps without it end elsewhere.
    const noDropout = loadModel(fixture);
    addLora(noDropout, options, new Rng(3));
    const plain = { model: noDropout, optimizer: new AdamW(trainableParams(noDropout), first.optimizer.options) };
    await run(plain, 4);
    const undropped = await values(plain.model);
    expect(Math.max(...undropped.map((u, i) => maxAbsDiff(u, want[i]!)))).toBeGreaterThan(1e-4);
  });
});
