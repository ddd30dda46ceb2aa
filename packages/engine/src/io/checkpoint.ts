/**
 * Model folders in the Hugging Face layout: config.json, model.safetensors (or shards with
 * model.safetensors.index.json), generation_config.json. Tokenizer files are the tokenizer module's
 * to copy.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as tf from '@tensorflow/tfjs-core';
import { readModelConfig } from '../model/config.ts';
import { GENERATION_CONFIG_FILE, readGenerationConfig } from '../generate/generation-config.ts';
import { exportWeights } from '../model/lora.ts';
import { modelFromWeights, type Model } from '../model/model.ts';
import { readModelWeights, STORED_DTYPES, writeModelWeights, type StoredDtype } from './safetensors.ts';

/**
 * Loads an HF model folder (LlamaForCausalLM / Qwen2ForCausalLM), single-file or sharded;
 * F16/BF16 weights become float32. A tied model needs no lm_head tensor (one stored anyway is
 * dropped); generation_config.json, when present, comes along as `model.generation`.
 */
export function loadModel(dir: string): Model {
  const configPath = join(dir, 'config.json');
  if (!existsSync(configPath)) throw new Error(`${dir}: not a model folder (no config.json)`);
  const config = readModelConfig(configPath);
  const generation = readGenerationConfig(dir);
  const weights = readModelWeights(dir);
  const tiedHead = config.tie_word_embeddings ? weights.get('lm_head.weight') : undefined;
  // Tied checkpoints sometimes store lm_head too (a copy of the embedding); it is not a parameter.
  if (tiedHead) {
    tiedHead.dispose();
    weights.delete('lm_head.weight');
  }
  let model: Model;
  try {
    model = modelFromWeights(config, weights);
  } catch (error) {
    for (const t of weights.values()) t.dispose();
    throw new Error(`${dir}: ${(error as Error).message}`);
  }
  if (generation) model.generation = generation;
  return model;
}

export interface SpecialTokenIds {
  bosTokenId?: number;
  eosTokenId?: number | number[];
  padTokenId?: number;
}

export interface SaveOptions {
  /**
   * Stored dtype; default the `torch_dtype` the model was loaded with when it is bfloat16 or
   * float16 (as `save_pretrained` keeps a model's dtype) and it has no LoRA adapters, else
   * float32. Trained weights should be saved as float32: bf16 keeps 8 bits of mantissa, so an
   * update smaller than 2^-9 of a weight (a merged LoRA delta, a step at a small learning rate)
   * rounds away.
   */
  dtype?: StoredDtype;
  /** Bytes per shard (default 5 GB, transformers' default); past it weights are sharded with an index. */
  maxShardBytes?: number;
}

/** The dtype saveModel writes by default (see SaveOptions.dtype). */
export function defaultSaveDtype(model: Model): StoredDtype {
  const stored = model.config.torch_dtype;
  return !model.lora && (stored === 'bfloat16' || stored === 'float16') ? stored : 'float32';
}

/** Writes `model` as an HF folder that transformers loads unchanged (LoRA adapters merged in). */
export async function saveModel(model: Model, dir: string, tokens: SpecialTokenIds = {}, options: SaveOptions = {}): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const dtype = options.dtype ?? defaultSaveDtype(model);
  if (!(dtype in STORED_DTYPES)) throw new Error(`saveModel: dtype ${dtype} is not one of ${Object.keys(STORED_DTYPES).join(', ')}`);
  const config = {
    ...model.config,
    torch_dtype: dtype,
    bos_token_id: tokens.bosTokenId ?? model.config.bos_token_id ?? null,
    eos_token_id: tokens.eosTokenId ?? model.config.eos_token_id ?? null,
    pad_token_id: tokens.padTokenId ?? model.config.pad_token_id ?? null,
  };
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  const weights = exportWeights(model);
  try {
    await writeModelWeights(dir, weights, { dtype, maxShardBytes: options.maxShardBytes });
  } finally {
    for (const [name, t] of weights) if (t !== model.params.get(name)) (t as tf.Tensor).dispose();
  }
  // The loaded generation_config (sampling defaults, every end id) carries on; ids passed here win.
  const generation: Record<string, unknown> = model.generation ? { ...model.generation } : { _from_model_config: true };
  for (const key of ['bos_token_id', 'eos_token_id', 'pad_token_id'] as const) {
    const explicit = { bos_token_id: tokens.bosTokenId, eos_token_id: tokens.eosTokenId, pad_token_id: tokens.padTokenId }[key];
    if (explicit !== undefined) generation[key] = explicit;
    else if (generation[key] === undefined && config[key] !== null) generation[key] = config[key];
  }
  writeFileSync(join(dir, GENERATION_CONFIG_FILE), `${JSON.stringify(generation, null, 2)}\n`);
}
