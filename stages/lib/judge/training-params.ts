/**
 * The `with:` keys the trainer stages (sft, pretrain, dpo, grpo) share: one name and one meaning per
 * setting, so a user who learnt one stage's keys knows the next one's. They sit flat in `with:`
 * beside each stage's own keys (beta, rewards, block_size, ...). Each stage keeps its own defaults
 * (a from-scratch SFT and an RL pass on a trained model want different rates), so the builders take
 * them. The training loop that reads them is training.ts.
 *
 * Renamed keys: the names the stages used before they shared one vocabulary still load, for one
 * release, with a warning that names the new key (StageType.renamedParams: `validate`, `plan` and
 * `run` print it).
 */
import { z } from 'zod';
import { loraOptionsSchema } from '#engine/schema';

/** Per-stage defaults of the optimizer, schedule and checkpoint keys. */
export interface OptimizerDefaults {
  learning_rate: number;
  warmup_steps: number;
  weight_decay: number;
  checkpoint_every: number;
}

/** The keys the training loop reads (training.ts `LoopSettings`) and AdamW's decay. */
export function optimizerParams(defaults: OptimizerDefaults) {
  return {
    learning_rate: z.number().positive().default(defaults.learning_rate).describe('Peak learning rate (linear warmup, then cosine decay)'),
    min_lr_ratio: z.number().min(0).max(1).default(0.1).describe('Final learning rate as a fraction of learning_rate'),
    warmup_steps: z.number().int().min(0).default(defaults.warmup_steps).describe('Linear warmup steps'),
    weight_decay: z.number().min(0).default(defaults.weight_decay).describe('AdamW decoupled weight decay (not on norms and biases)'),
    max_grad_norm: z.number().min(0).default(1).describe('Clip the global gradient norm (0 = off)'),
    checkpoint_every: z.number().int().positive().default(defaults.checkpoint_every).describe('Save a step checkpoint (weights, AdamW moments, step) every N steps, so a killed run resumes'),
  };
}

/** `lora:` as every trainer that starts from a checkpoint reads it. */
export const loraParam = loraOptionsSchema
  .nullable()
  .default(null)
  .describe('Train LoRA adapters on the starting model instead of every weight (PEFT names: r, lora_alpha, lora_dropout, target_modules); the checkpoint holds the merged weights and adapter/ in PEFT format');

/** Dev prompts decoded greedily to measure accuracy; `when` says when the stage decodes them. */
export function evalPromptsParam(defaultCount: number, when: string) {
  return z.number().int().min(0).default(defaultCount).describe(`Dev prompts (a seeded sample) decoded greedily ${when}, for format validity and accuracy (0 = none)`);
}

/** The generation budget of those evaluation decodes. */
export function maxNewTokensParam(defaultTokens: number) {
  return z.number().int().positive().default(defaultTokens).describe('Tokens generated per dev prompt when evaluating');
}

/** Old key -> new key, for the stages that used other names before this vocabulary. */
export const RENAMED_SFT_PARAMS = { lr: 'learning_rate', eval_generate: 'eval_prompts' } as const;
export const RENAMED_PRETRAIN_PARAMS = { lr: 'learning_rate' } as const;
/** dpo's `max_completion_length` was only its probe's budget (grpo's is its rollouts' and stays). */
export const RENAMED_DPO_PARAMS = { max_completion_length: 'max_new_tokens' } as const;
