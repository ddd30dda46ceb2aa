/**
 * `generation_config.json`, the file transformers' `generate()` reads its defaults from: special
 * token ids (a published instruct model often stops on two: Qwen2.5-Instruct's eos_token_id is
 * [151645, 151643], <|im_end|> and <|endoftext|>, while config.json names one) and sampling
 * defaults. Kept with the model so a saved folder carries them on, and mapped onto the engine's
 * GenerateOptions by `generationDefaults`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { SamplingOptions } from './sampling.ts';

export const GENERATION_CONFIG_FILE = 'generation_config.json';

const tokenIds = z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative())]).nullable();

export const generationConfigSchema = z
  .object({
    bos_token_id: tokenIds.optional(),
    eos_token_id: tokenIds.optional(),
    pad_token_id: tokenIds.optional(),
    do_sample: z.boolean().optional().describe('HF default false: greedy decoding.'),
    temperature: z.number().nonnegative().optional(),
    top_k: z.number().int().nonnegative().optional().describe('HF default 50; 0 keeps every token.'),
    top_p: z.number().gt(0).max(1).optional(),
    max_new_tokens: z.number().int().positive().optional(),
    repetition_penalty: z.number().positive().optional().describe('HF default 1 (off); applied to the prompt and completion ids, greedy or sampled (GenerateOptions.repetitionPenalty).'),
  })
  .loose();
export type GenerationConfig = z.output<typeof generationConfigSchema>;

/** The folder's generation_config.json, or undefined when it has none. Errors name the file and the key. */
export function readGenerationConfig(dir: string): GenerationConfig | undefined {
  const path = join(dir, GENERATION_CONFIG_FILE);
  if (!existsSync(path)) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new Error(`${path}: unreadable JSON: ${(error as Error).message}`);
  }
  const parsed = generationConfigSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`${path}: ${parsed.error.issues.map((i) => `key ${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

const asList = (ids: number | number[] | null | undefined) => (ids === null || ids === undefined ? [] : Array.isArray(ids) ? ids : [ids]);

/**
 * The generate() options a generation config sets, under HF's semantics: without do_sample it is
 * greedy (temperature 0 here); with it temperature 1, top_k 50 and top_p 1 unless the file says
 * otherwise (transformers' GenerationConfig defaults). `eosTokenIds` lists every end id;
 * `repetitionPenalty` applies whether or not it samples, as in transformers.
 */
export function generationDefaults(config: GenerationConfig | undefined): SamplingOptions & { eosTokenIds: number[]; repetitionPenalty: number; maxNewTokens?: number } {
  const sampled = config?.do_sample === true;
  return {
    temperature: sampled ? (config?.temperature ?? 1) : 0,
    topK: sampled ? (config?.top_k ?? 50) : 0,
    topP: sampled ? (config?.top_p ?? 1) : 1,
    eosTokenIds: asList(config?.eos_token_id),
    repetitionPenalty: config?.repetition_penalty ?? 1,
    ...(config?.max_new_tokens !== undefined ? { maxNewTokens: config.max_new_tokens } : {}),
  };
}
