/**
 * The files a 'checkpoint' artifact (sft, pretrain, dpo, grpo) carries beside the model's weights
 * and tokenizer (HF layout, the engine's to read and write):
 *   completion_format.json  how the judge writes its completions (answer first or last, system
 *                           prompt kept or not), so a checkpoint is sampled and evaluated the way it
 *                           was trained without repeating the option. cot writes it into the
 *                           'sft-set' too, for sft to inherit.
 *   rl-pool.json            the train queries SFT held out for sample, dpo and grpo (rl/pool.ts).
 */
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { GradeBalance } from '../relevance/grade-balance.ts';

export const COMPLETION_FORMAT_FILE = 'completion_format.json';

export interface CompletionFormat {
  answerFirst: boolean;
  /**
   * Leave the system message out of the prompt. A model trained from scratch gains nothing from a
   * constant guideline and pays for it in context and compute; a pretrained judge keeps it.
   */
  dropSystemPrompt: boolean;
}

export async function readCompletionFormat(dir: string): Promise<CompletionFormat> {
  const file = join(dir, COMPLETION_FORMAT_FILE);
  if (!existsSync(file)) return { answerFirst: false, dropSystemPrompt: false };
  const raw = JSON.parse(await fs.readFile(file, 'utf8')) as Partial<CompletionFormat>;
  return { answerFirst: raw.answerFirst === true, dropSystemPrompt: raw.dropSystemPrompt === true };
}

export async function writeCompletionFormat(dir: string, format: CompletionFormat): Promise<void> {
  await fs.writeFile(join(dir, COMPLETION_FORMAT_FILE), `${JSON.stringify(format, null, 2)}\n`);
}

export const RL_POOL_FILE = 'rl-pool.json';

export interface RlPool {
  /** Share of the train queries held out. */
  fraction: number;
  /** The held-out queries, normalised and sorted. */
  queries: string[];
  /** Set when SFT balanced grades: the RL stages draw from the pool the same way (grade-balance.ts). */
  balance?: GradeBalance;
}

export async function writeRlPool(dir: string, pool: RlPool): Promise<void> {
  await fs.writeFile(join(dir, RL_POOL_FILE), `${JSON.stringify(pool, null, 2)}\n`);
}

/** The pool a checkpoint was trained without, or undefined when its SFT held none out. */
export async function readRlPool(checkpointDir: string): Promise<RlPool | undefined> {
  const file = join(checkpointDir, RL_POOL_FILE);
  return existsSync(file) ? (JSON.parse(await fs.readFile(file, 'utf8')) as RlPool) : undefined;
}

/** Copies a checkpoint's pool file into the checkpoint trained from it. */
export async function carryRlPool(fromDir: string, toDir: string): Promise<void> {
  const file = join(fromDir, RL_POOL_FILE);
  if (existsSync(file)) await fs.copyFile(file, join(toDir, RL_POOL_FILE));
}
