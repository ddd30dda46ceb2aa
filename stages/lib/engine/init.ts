/**
 * Where a training stage's model comes from: a preset trained from scratch, or `init:` an HF
 * folder. The schema is for stage params to embed, so the choice is documented once.
 */
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { loadModel } from './checkpoint.ts';
import { presets } from './config.ts';
import type { RandomSource } from './host.ts';
import { createModel, disposeModel, type Model } from './model.ts';

export const modelSourceSchema = z
  .object({
    preset: z.enum(['tiny', 'small']).optional().describe('Train from scratch: tiny (about 1M parameters) or small (about 10M), sized to the tokenizer vocabulary.'),
    init: z.string().min(1).optional().describe('Start from this Hugging Face model folder (config.json + safetensors), relative to the config file.'),
  })
  .refine((s) => (s.preset === undefined) !== (s.init === undefined), { message: 'give exactly one of preset or init' });
export type ModelSource = z.output<typeof modelSourceSchema>;

export interface ModelSourceContext {
  /** The tokenizer's vocabulary size: a preset's embedding rows, and checked against an init folder's. */
  vocabSize: number;
  /** Initialises a preset's weights. */
  rng: RandomSource;
  /** Folder `init` is relative to (the YAML's folder). */
  baseDir: string;
}

export function initModel(source: ModelSource, context: ModelSourceContext): Model {
  if (source.preset) return createModel(presets[source.preset](context.vocabSize), context.rng);
  const dir = isAbsolute(source.init as string) ? (source.init as string) : resolve(context.baseDir, source.init as string);
  const model = loadModel(dir);
  // A tokenizer may have fewer ids than embedding rows (HF pads vocab to a multiple of 64), never more.
  if (context.vocabSize > model.config.vocab_size) {
    disposeModel(model);
    throw new Error(`${dir}: tokenizer has ${context.vocabSize} ids but the model's vocab_size is ${model.config.vocab_size}`);
  }
  return model;
}
