/**
 * Model folders in the Hugging Face layout: config.json, model.safetensors (or shards),
 * generation_config.json. Tokenizer files are the tokenizer module's to copy.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as tf from '@tensorflow/tfjs-core';
import { readModelConfig } from './config.ts';
import { exportWeights } from './lora.ts';
import { modelFromWeights, type Model } from './model.ts';
import { readModelWeights, writeSafetensors } from './safetensors.ts';

/** Loads an HF model folder (LlamaForCausalLM / Qwen2ForCausalLM); F16/BF16 weights become float32. */
export function loadModel(dir: string): Model {
  const configPath = join(dir, 'config.json');
  if (!existsSync(configPath)) throw new Error(`${dir}: not a model folder (no config.json)`);
  const config = readModelConfig(configPath);
  const weights = readModelWeights(dir);
  const tiedHead = config.tie_word_embeddings ? weights.get('lm_head.weight') : undefined;
  // Tied checkpoints sometimes store lm_head too (a copy of the embedding); it is not a parameter.
  if (tiedHead) {
    tiedHead.dispose();
    weights.delete('lm_head.weight');
  }
  try {
    return modelFromWeights(config, weights);
  } catch (error) {
    for (const t of weights.values()) t.dispose();
    throw new Error(`${dir}: ${(error as Error).message}`);
  }
}

export interface SpecialTokenIds {
  bosTokenId?: number;
  eosTokenId?: number | number[];
  padTokenId?: number;
}

/** Writes `model` as an HF folder that transformers loads unchanged (float32 weights; LoRA adapters merged in). */
export async function saveModel(model: Model, dir: string, tokens: SpecialTokenIds = {}): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const config = {
    ...model.config,
    torch_dtype: 'float32',
    bos_token_id: tokens.bosTokenId ?? model.config.bos_token_id ?? null,
    eos_token_id: tokens.eosTokenId ?? model.config.eos_token_id ?? null,
    pad_token_id: tokens.padTokenId ?? model.config.pad_token_id ?? null,
  };
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  const weights = exportWeights(model);
  try {
    await writeSafetensors(join(dir, 'model.safetensors'), weights);
  } finally {
    for (const [name, t] of weights) if (t !== model.params.get(name)) t.dispose();
  }
  const generation: Record<string, unknown> = { _from_model_config: true };
  if (config.bos_token_id !== null) generation.bos_token_id = config.bos_token_id;
  if (config.eos_token_id !== null) generation.eos_token_id = config.eos_token_id;
  if (config.pad_token_id !== null) generation.pad_token_id = config.pad_token_id;
  writeFileSync(join(dir, 'generation_config.json'), `${JSON.stringify(generation, null, 2)}\n`);
}
