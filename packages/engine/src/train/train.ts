/**
 * The pieces of a training loop that SFT, DPO and GRPO share: token-weighted gradient
 * accumulation, one optimizer step, length-bucketed batching, padding, and the optimizer half of a
 * step checkpoint. The loops themselves stay in the stages.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { RandomSource } from '../host.ts';
import { trainableParams } from '../model/lora.ts';
import { maskedLmLoss, type Model } from '../model/model.ts';
import type { AdamW } from './optim.ts';
import { readSafetensors, writeSafetensors } from '../io/safetensors.ts';

/**
 * A micro-batch's loss as a SUM over its units (tokens for SFT, pairs for DPO) and how many units
 * it has. Accumulation divides by the total, so batch 1 x accumulation 8 makes the same update as
 * 8 x 1 even when micro-batches hold different numbers of tokens.
 */
export interface WeightedLoss {
  loss: tf.Scalar;
  weight: number;
}

export interface AccumulatedGradients {
  /** Gradient of sum(loss) / sum(weight), keyed by HF parameter name. Caller disposes. */
  grads: Map<string, tf.Tensor>;
  /** sum(loss) / sum(weight). */
  loss: number;
  weight: number;
}

/** Unscaled sums over several losses: the gradient of each variable, the losses and their weights. */
export interface GradientSums {
  /** One per variable, in the order given; undefined when there were no losses. Caller disposes. */
  sums: tf.Tensor[] | undefined;
  lossSum: number;
  weight: number;
}

/**
 * The gradients of each item's loss summed, one item at a time so only one item's activations are
 * alive at once: what gradient accumulation (accumulateGradients) and a data-parallel rank
 * (data-parallel.ts) both do. `signal` is checked before each item (an abort throws its reason;
 * nothing is left allocated).
 */
export async function summedGradients<Item>(items: readonly Item[], variables: tf.Variable[], lossOf: (item: Item) => WeightedLoss, signal?: AbortSignal): Promise<GradientSums> {
  let sums: tf.Tensor[] | undefined;
  let lossSum = 0;
  let weight = 0;
  for (const item of items) {
    if (signal?.aborted) {
      tf.dispose(sums ?? []);
      signal.throwIfAborted();
    }
    let itemWeight = 0;
    const { value, grads } = tf.variableGrads(() => {
      const out = lossOf(item);
      itemWeight = out.weight;
      return out.loss;
    }, variables);
    // An async read: the webgpu backend has no synchronous one.
    lossSum += (await value.data())[0] as number;
    value.dispose();
    weight += itemWeight;
    const current = variables.map((v) => grads[v.name] ?? tf.zerosLike(v));
    if (!sums) sums = current;
    else {
      const previous: tf.Tensor[] = sums;
      sums = previous.map((s, i) => tf.add(s, current[i] as tf.Tensor));
      tf.dispose([...previous, ...current]);
    }
  }
  return { sums, lossSum, weight };
}

/** `signal` is checked before each micro-batch (an abort throws its reason; nothing is left allocated). */
export async function accumulateGradients<Batch>(model: Model, microBatches: Batch[], lossOf: (batch: Batch) => WeightedLoss, signal?: AbortSignal): Promise<AccumulatedGradients> {
  // With LoRA only the adapters: the base weights get no gradient (nor its cost).
  const trainable = trainableParams(model);
  const names = [...trainable.keys()];
  const variables = names.map((n) => trainable.get(n) as tf.Variable);
  const { sums, lossSum, weight } = await summedGradients(microBatches, variables, lossOf, signal);
  const scale = 1 / Math.max(weight, 1e-12);
  const grads = new Map<string, tf.Tensor>();
  (sums ?? []).forEach((s, i) => {
    grads.set(names[i] as string, tf.mul(s, scale));
    s.dispose();
  });
  return { grads, loss: lossSum * scale, weight };
}

export interface StepOptions {
  lr: number;
  /** Clip the global gradient norm to this; 0 turns clipping off. */
  maxGradNorm: number;
  /** Stops the step between micro-batches, before the update (the parameters stay as they were). */
  signal?: AbortSignal;
}

export interface StepResult {
  loss: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  lr: number;
}

/**
 * One optimizer update from `microBatches` (accumulated, clipped, AdamW). Allocates no tensors
 * that outlive it.
 */
export async function trainStep<Batch>(model: Model, optimizer: AdamW, microBatches: Batch[], lossOf: (batch: Batch) => WeightedLoss, options: StepOptions): Promise<StepResult> {
  // LoRA dropout is on while this step takes gradients; its masks are keyed by the optimizer step.
  if (model.lora) model.lora.training = { step: optimizer.step, calls: 0 };
  let accumulated: AccumulatedGradients;
  try {
    accumulated = await accumulateGradients(model, microBatches, lossOf, options.signal);
  } finally {
    if (model.lora) model.lora.training = undefined;
  }
  const { grads, loss } = accumulated;
  const norm = await optimizer.clipAndApply(grads, options.lr, options.maxGradNorm);
  tf.dispose([...grads.values()]);
  return { loss, gradNorm: norm, lr: options.lr };
}

/**
 * Batches of similar length (HF `LengthGroupedSampler`): shuffle, cut into mega-batches of 50
 * batches, sort each by length (longest first), cut into batches, then shuffle the batch order.
 * Less padding, still random; deterministic given `rng`.
 */
export function lengthBucketedBatches<T>(examples: readonly T[], batchSize: number, rng: RandomSource, lengthOf: (example: T) => number): T[][] {
  if (!(batchSize >= 1)) throw new Error(`lengthBucketedBatches: batchSize must be at least 1, got ${batchSize}`);
  const order = rng.shuffle(examples.map((_, i) => i));
  const batches: T[][] = [];
  const mega = batchSize * 50;
  for (let start = 0; start < order.length; start += mega) {
    const group = order.slice(start, start + mega).sort((a, b) => lengthOf(examples[b] as T) - lengthOf(examples[a] as T) || a - b);
    for (let i = 0; i < group.length; i += batchSize) batches.push(group.slice(i, i + batchSize).map((j) => examples[j] as T));
  }
  return rng.shuffle(batches);
}

export interface TokenizedExample {
  ids: number[];
  /** 1 where the token is a target whose loss counts (e.g. completion tokens). */
  lossMask: number[];
}

export interface PaddedBatch {
  inputIds: number[][];
  attentionMask: number[][];
  lossMask: number[][];
  /** Number of targets whose loss counts: the weight for accumulation. */
  targetCount: number;
}

/** Right-pads a training batch (causal attention never looks right, so padding there is inert). */
export function padBatch(examples: readonly TokenizedExample[], padId = 0): PaddedBatch {
  if (examples.length === 0) throw new Error('padBatch: no examples');
  const width = Math.max(...examples.map((e) => e.ids.length));
  const pad = <V>(row: V[], value: V) => [...row, ...new Array<V>(width - row.length).fill(value)];
  const lossMask = examples.map((e, i) => {
    if (e.lossMask.length !== e.ids.length) throw new Error(`padBatch: example ${i} has ${e.ids.length} ids but ${e.lossMask.length} mask values`);
    return pad(e.lossMask, 0);
  });
  return {
    inputIds: examples.map((e) => pad(e.ids, padId)),
    attentionMask: examples.map((e) => pad(e.ids.map(() => 1), 0)),
    lossMask,
    // Token 0 of a row is never a target.
    targetCount: lossMask.reduce((n, row) => n + row.slice(1).reduce((a, b) => a + b, 0), 0),
  };
}

/** The SFT loss of a padded batch as a WeightedLoss: summed cross-entropy over its targets. */
export function causalLmLoss(model: Model, batch: PaddedBatch): WeightedLoss {
  const loss = maskedLmLoss(model, batch.inputIds, batch.lossMask, { attentionMask: batch.attentionMask, reduction: 'sum' });
  return { loss, weight: batch.targetCount };
}

const WEIGHTS_FILE = 'model.safetensors';
const MOMENTS_FILE = 'optimizer.safetensors';
const OPTIMIZER_JSON = 'optimizer.json';

/**
 * Writes weights, AdamW moments and the optimizer step into `dir` (a step-checkpoint folder from
 * ctx.checkpoints.save). The caller keeps RNG state and data position in the checkpoint's JSON state.
 */
export async function saveTrainingState(dir: string, model: Model, optimizer: AdamW): Promise<void> {
  // With LoRA the adapters only: the base stays what `init` names.
  await writeSafetensors(join(dir, WEIGHTS_FILE), trainableParams(model) as Map<string, tf.Tensor>);
  const moments = new Map<string, tf.Tensor>();
  for (const [name, m] of optimizer.m) moments.set(`exp_avg.${name}`, m);
  for (const [name, v] of optimizer.v) moments.set(`exp_avg_sq.${name}`, v);
  await writeSafetensors(join(dir, MOMENTS_FILE), moments);
  writeFileSync(join(dir, OPTIMIZER_JSON), `${JSON.stringify({ step: optimizer.step, options: optimizer.options })}\n`);
}

/** Restores what `saveTrainingState` wrote into an existing model and optimizer of the same shape. */
export function loadTrainingState(dir: string, model: Model, optimizer: AdamW): void {
  for (const file of [WEIGHTS_FILE, MOMENTS_FILE, OPTIMIZER_JSON]) {
    if (!existsSync(join(dir, file))) throw new Error(`${dir}: training state is missing ${file}`);
  }
  const restore = (path: string, target: Map<string, tf.Variable>, prefix: string) => {
    const tensors = readSafetensors(path);
    try {
      for (const [name, variable] of target) {
        const t = tensors.get(prefix + name);
        if (!t || !tf.util.arraysEqual(t.shape, variable.shape)) {
          throw new Error(`${path}: tensor ${prefix + name} ${t ? `has shape [${t.shape}], expected [${variable.shape}]` : 'is missing'}`);
        }
        variable.assign(t);
      }
    } finally {
      tf.dispose([...tensors.values()]);
    }
  };
  restore(join(dir, WEIGHTS_FILE), trainableParams(model), '');
  restore(join(dir, MOMENTS_FILE), optimizer.m, 'exp_avg.');
  restore(join(dir, MOMENTS_FILE), optimizer.v, 'exp_avg_sq.');
  const saved = JSON.parse(readFileSync(join(dir, OPTIMIZER_JSON), 'utf8')) as { step?: unknown };
  if (typeof saved.step !== 'number') throw new Error(`${join(dir, OPTIMIZER_JSON)}: key step must be a number`);
  optimizer.step = saved.step;
}
