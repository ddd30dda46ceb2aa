/**
 * The `lora:` block of training stages, apart from lora.ts so stage schemas can import it without
 * loading TensorFlow.js. Field names and defaults are PEFT's LoraConfig ones.
 */
import { z } from 'zod';

export const LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

/** Stage schemas embed this as `lora:`; field names and defaults are PEFT's LoraConfig ones. */
export const loraOptionsSchema = z.strictObject({
  r: z.number().int().positive().default(8).describe('Rank of the update B A.'),
  lora_alpha: z.number().positive().default(8).describe('Scale numerator: the update is multiplied by lora_alpha / r.'),
  lora_dropout: z.number().min(0).lt(1).default(0).describe('Dropout on the adapter input while training (PEFT draws one mask per module; here q|k|v and gate|up, which read the same input, share one).'),
  target_modules: z.array(z.enum(LORA_TARGETS)).min(1).default(['q_proj', 'v_proj']).describe('Linear layers that get adapters, by their HF module names.'),
});
export type LoraOptions = z.output<typeof loraOptionsSchema>;
