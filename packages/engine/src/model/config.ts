/**
 * The model config: the fields of a Hugging Face `config.json` for `LlamaForCausalLM` and
 * `Qwen2ForCausalLM` that change the computation, under their HF names so the file round-trips.
 * Defaults are the HF ones (transformers' LlamaConfig / Qwen2Config), written once here.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';

export const SUPPORTED_ARCHITECTURES = ['LlamaForCausalLM', 'Qwen2ForCausalLM'] as const;

const tokenIds = z.union([z.number().int(), z.array(z.number().int())]).nullable();

export const modelConfigSchema = z
  .object({
    architectures: z.array(z.enum(SUPPORTED_ARCHITECTURES)).length(1).describe('Which HF class loads this folder.'),
    model_type: z.enum(['llama', 'qwen2']).describe('HF model type, matching the architecture.'),
    vocab_size: z.number().int().positive().describe('Rows of the embedding and of lm_head.'),
    hidden_size: z.number().int().positive().describe('Model width d.'),
    intermediate_size: z.number().int().positive().describe('SwiGLU inner width.'),
    num_hidden_layers: z.number().int().positive().describe('Decoder blocks.'),
    num_attention_heads: z.number().int().positive().describe('Query heads.'),
    num_key_value_heads: z.number().int().positive().optional().describe('Key/value heads (grouped-query attention); HF: same as query heads.'),
    head_dim: z.number().int().positive().optional().describe('Per-head width; HF: hidden_size / num_attention_heads.'),
    hidden_act: z.literal('silu').default('silu').describe('SwiGLU activation; only silu exists in these families.'),
    max_position_embeddings: z.number().int().positive().default(2048).describe('Longest sequence RoPE tables cover.'),
    rms_norm_eps: z.number().positive().default(1e-6).describe('RMSNorm epsilon.'),
    rope_theta: z.number().positive().default(10000).describe('RoPE base frequency.'),
    rope_scaling: z
      .object({
        rope_type: z.string().optional(),
        type: z.string().optional().describe('The older name of rope_type.'),
        factor: z.number().positive().optional(),
        low_freq_factor: z.number().positive().optional(),
        high_freq_factor: z.number().positive().optional(),
        original_max_position_embeddings: z.number().int().positive().optional(),
      })
      .loose()
      .nullable()
      .optional()
      .describe('RoPE scaling: default, linear and llama3 are applied (ropeScalingOf); other types are refused, not ignored.'),
    attention_bias: z.boolean().default(false).describe('Llama: bias on q/k/v/o projections. Qwen2 always has q/k/v bias.'),
    mlp_bias: z.boolean().default(false).describe('Llama: bias on the SwiGLU projections.'),
    tie_word_embeddings: z.boolean().default(false).describe('lm_head shares the embedding matrix.'),
    bos_token_id: tokenIds.optional().describe('Beginning-of-sequence id(s).'),
    eos_token_id: tokenIds.optional().describe('End-of-sequence id(s).'),
    pad_token_id: tokenIds.optional().describe('Padding id.'),
    torch_dtype: z.string().default('float32').describe('Dtype of the stored weights.'),
    initializer_range: z.number().positive().default(0.02).describe('Std of the normal init for models trained from scratch.'),
  })
  .loose();

/** A stage's overrides of a preset's shape, under the HF config.json names. */
export const modelOverridesSchema = z.strictObject({
  hidden_size: z.number().int().positive().optional(),
  intermediate_size: z.number().int().positive().optional(),
  num_hidden_layers: z.number().int().positive().optional(),
  num_attention_heads: z.number().int().positive().optional(),
  num_key_value_heads: z.number().int().positive().optional(),
  max_position_embeddings: z.number().int().positive().optional(),
  tie_word_embeddings: z.boolean().optional(),
});

export type ModelConfig = z.output<typeof modelConfigSchema>;
export type ModelConfigInput = z.input<typeof modelConfigSchema>;

/** The derived sizes every layer uses. */
export interface ModelDims {
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Query heads per key/value head. */
  group: number;
  /** Whether q/k/v projections carry a bias (Qwen2 always; Llama when attention_bias). */
  qkvBias: boolean;
  /** Whether o_proj carries a bias (Llama attention_bias only). */
  oBias: boolean;
}

export function modelDims(config: ModelConfig): ModelDims {
  const heads = config.num_attention_heads;
  const kvHeads = config.num_key_value_heads ?? heads;
  const headDim = config.head_dim ?? config.hidden_size / heads;
  const qwen = config.model_type === 'qwen2';
  return { heads, kvHeads, headDim, group: heads / kvHeads, qkvBias: qwen || config.attention_bias, oBias: !qwen && config.attention_bias };
}

/**
 * Validates a config object; `source` names where it came from in errors. Every problem is
 * reported at once, each with its key.
 */
export function parseModelConfig(raw: unknown, source: string): ModelConfig {
  const result = modelConfigSchema.safeParse(raw);
  const problems: string[] = result.success
    ? []
    : result.error.issues.map((issue) => `  ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  if (result.success) {
    const c = result.data;
    const arch = c.architectures[0];
    const expectedType = arch === 'Qwen2ForCausalLM' ? 'qwen2' : 'llama';
    if (c.model_type !== expectedType) problems.push(`  model_type: ${arch} needs "${expectedType}", found "${c.model_type}"`);
    const heads = c.num_attention_heads;
    const kv = c.num_key_value_heads ?? heads;
    if (heads % kv !== 0) problems.push(`  num_key_value_heads: ${kv} must divide num_attention_heads ${heads}`);
    const headDim = c.head_dim ?? c.hidden_size / heads;
    if (!Number.isInteger(headDim)) problems.push(`  head_dim: hidden_size ${c.hidden_size} is not a multiple of num_attention_heads ${heads}; set head_dim`);
    else if (headDim % 2 !== 0) problems.push(`  head_dim: ${headDim} must be even for RoPE`);
    const rope = ropeScalingProblem(c);
    if (rope) problems.push(`  ${rope}`);
  }
  if (problems.length > 0) throw new Error(`${source}: invalid model config\n${problems.join('\n')}`);
  return (result as { data: ModelConfig }).data;
}

/**
 * The RoPE scalings applied here: each only rescales the inverse frequencies, once, as transformers'
 * modeling_rope_utils does (`_compute_linear_scaling_rope_parameters`,
 * `_compute_llama3_parameters`). dynamic, yarn and longrope change with the sequence length or
 * scale the attention too; they are refused by name.
 */
export type RopeScaling =
  | { rope_type: 'default' }
  | { rope_type: 'linear'; factor: number }
  | { rope_type: 'llama3'; factor: number; low_freq_factor: number; high_freq_factor: number; original_max_position_embeddings: number };

const ROPE_TYPES_APPLIED = ['default', 'linear', 'llama3'];

function ropeScalingProblem(config: ModelConfig): string | undefined {
  const block = config.rope_scaling;
  if (!block) return undefined;
  const kind = block.rope_type ?? block.type;
  const key = block.rope_type !== undefined ? 'rope_scaling.rope_type' : 'rope_scaling.type';
  if (kind === undefined) return 'rope_scaling: has neither rope_type nor type';
  if (!ROPE_TYPES_APPLIED.includes(kind)) {
    return `${key}: ${JSON.stringify(kind)} is not implemented (applied: ${ROPE_TYPES_APPLIED.join(', ')}); a model that needs it would compute wrong positions`;
  }
  const needed = kind === 'linear' ? ['factor'] : kind === 'llama3' ? ['factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings'] : [];
  const missing = needed.filter((k) => block[k as keyof typeof block] === undefined);
  if (missing.length > 0) return `rope_scaling: ${kind} needs ${missing.join(', ')}`;
  if (kind === 'llama3' && (block.high_freq_factor as number) <= (block.low_freq_factor as number)) {
    return `rope_scaling.high_freq_factor: ${block.high_freq_factor} must exceed low_freq_factor ${block.low_freq_factor}`;
  }
  return undefined;
}

/** The validated RoPE scaling of a parsed config (parseModelConfig refused the others). */
export function ropeScalingOf(config: ModelConfig): RopeScaling {
  const block = config.rope_scaling;
  const kind = block ? (block.rope_type ?? block.type) : 'default';
  if (!block || kind === 'default') return { rope_type: 'default' };
  if (kind === 'linear') return { rope_type: 'linear', factor: block.factor as number };
  return {
    rope_type: 'llama3',
    factor: block.factor as number,
    low_freq_factor: block.low_freq_factor as number,
    high_freq_factor: block.high_freq_factor as number,
    original_max_position_embeddings: block.original_max_position_embeddings as number,
  };
}

export function readModelConfig(path: string): ModelConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new Error(`${path}: cannot read model config: ${(error as Error).message}`);
  }
  return parseModelConfig(raw, path);
}

export type PresetName = 'tiny' | 'small';

/**
 * Shapes for models trained from scratch. `tiny` is the engine benchmark's shape (bench/engine.ts; about 0.9M
 * parameters at vocab 512); `small` about 10M at vocab 8k. Llama layout, untied head.
 */
const PRESET_SHAPES: Record<PresetName, Omit<ModelConfigInput, 'vocab_size' | 'architectures' | 'model_type'>> = {
  tiny: { hidden_size: 128, intermediate_size: 352, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512 },
  small: { hidden_size: 256, intermediate_size: 704, num_hidden_layers: 8, num_attention_heads: 8, num_key_value_heads: 4, max_position_embeddings: 1024 },
};

export const presets: Record<PresetName, (vocabSize: number, overrides?: Partial<ModelConfigInput>) => ModelConfig> = {
  tiny: (vocabSize, overrides) => presetConfig('tiny', vocabSize, overrides),
  small: (vocabSize, overrides) => presetConfig('small', vocabSize, overrides),
};

function presetConfig(name: PresetName, vocabSize: number, overrides: Partial<ModelConfigInput> = {}): ModelConfig {
  return parseModelConfig(
    { architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: vocabSize, ...PRESET_SHAPES[name], ...overrides },
    `preset ${name}`,
  );
}
