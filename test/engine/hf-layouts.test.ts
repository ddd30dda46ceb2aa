/**
 * Loading model folders in the forms published checkpoints take, and saving in the same layout:
 * sharded safetensors with an index, bf16 and fp16 weights, tied embeddings without lm_head, Qwen2's
 * q/k/v bias, rope_scaling, generation_config.json. The files are written byte by byte here (not by
 * the engine's writer), from values the stored dtype holds exactly, so loading must give those
 * values and saving must give those bytes back.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import { forward, initEngine, loadModel, parameterShapes, parseModelConfig, saveModel, disposeModel } from '../../packages/engine/src/index.ts';
import { modelFromWeights } from '../../packages/engine/src/model/model.ts';
import { ropeScalingOf } from '../../packages/engine/src/model/config.ts';
import { ropeTableValues } from '../../packages/engine/src/model/layers.ts';
import { generationDefaults, readGenerationConfig } from '../../packages/engine/src/generate/generation-config.ts';
import { floatToBfloat16, floatToHalf, readSafetensorsHeader } from '../../packages/engine/src/io/safetensors.ts';
import sftStage from '../../stages/sft/index.ts';

const scratch = mkdtempSync(join(tmpdir(), 'engine-hf-'));
beforeAll(async () => {
  await initEngine({ backend: 'wasm' });
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Qwen2.5's config.json fields at a small shape: tied embeddings, q/k/v bias, rope_theta 1e6. */
const qwenConfig = {
  architectures: ['Qwen2ForCausalLM'],
  model_type: 'qwen2',
  vocab_size: 40,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  rope_scaling: null,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  bos_token_id: 3,
  eos_token_id: 4,
};

type Half = 'BF16' | 'F16';

/**
 * Values the 16-bit type holds exactly: bf16 keeps float32's exponent and 7 mantissa bits, so a
 * normal draw with its low 16 bits cleared; f16 holds k / 1024 for |k| <= 2048.
 */
function exactValues(count: number, dtype: Half, rng: Rng, scale: number, offset = 0): { values: Float32Array; bits: Uint16Array } {
  const values = new Float32Array(count);
  const bits = new Uint16Array(count);
  const words = new Uint32Array(values.buffer);
  for (let i = 0; i < count; i++) {
    if (dtype === 'BF16') {
      values[i] = offset + rng.normal() * scale;
      words[i] = (words[i] as number) & 0xffff0000;
      bits[i] = (words[i] as number) >>> 16;
    } else {
      const k = Math.round((offset + rng.normal() * scale) * 1024);
      values[i] = k / 1024;
      // binary16 by hand: k / 1024 = m * 2^e with 1 <= |m| < 2 for the values drawn here (|k| >= 1).
      bits[i] = k === 0 ? 0 : halfBits(k / 1024);
    }
  }
  return { values, bits };
}

/** IEEE binary16 bits of a normal value, built from its exponent and mantissa (independent of floatToHalf). */
function halfBits(value: number): number {
  const sign = value < 0 ? 0x8000 : 0;
  let magnitude = Math.abs(value);
  let exponent = 0;
  while (magnitude >= 2) {
    magnitude /= 2;
    exponent++;
  }
  while (magnitude < 1) {
    magnitude *= 2;
    exponent--;
  }
  return sign | ((exponent + 15) << 10) | Math.round((magnitude - 1) * 1024);
}

/** A safetensors file from raw 16-bit parts, header unpadded (other writers need not pad). */
function writeRaw(path: string, tensors: Array<[string, number[], Uint16Array]>, dtype: Half): void {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, shape, bits] of tensors) {
    header[name] = { dtype, shape, data_offsets: [offset, offset + bits.byteLength] };
    offset += bits.byteLength;
  }
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([length, json, ...tensors.map(([, , bits]) => Buffer.from(bits.buffer))]));
}

/** Writes a published-style folder: 3 shards + index, no lm_head; returns the exact float32 values and bits. */
function writePublished(dir: string, config: Record<string, unknown>, dtype: Half, seed: number) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  const rng = new Rng(seed, 'hf-layouts');
  const parsed = parseModelConfig(config, 'test config');
  const tensors = parameterShapes(parsed).map(([name, shape]) => {
    const count = shape.reduce((a, b) => a * b, 1);
    const { values, bits } = exactValues(count, dtype, rng, name.endsWith('norm.weight') ? 0.1 : 0.2, name.endsWith('norm.weight') ? 1 : 0);
    return { name, shape, values, bits };
  });
  expect(tensors.some((t) => t.name === 'lm_head.weight')).toBe(false);
  expect(tensors.some((t) => t.name === 'model.layers.0.self_attn.q_proj.bias')).toBe(true);
  const third = Math.ceil(tensors.length / 3);
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < 3; s++) {
    const file = `model-0000${s + 1}-of-00003.safetensors`;
    const part = tensors.slice(s * third, (s + 1) * third);
    writeRaw(join(dir, file), part.map((t) => [t.name, t.shape, t.bits]), dtype);
    for (const t of part) weightMap[t.name] = file;
  }
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  return { parsed, tensors };
}

const ids = [[1, 7, 12, 30, 5, 9]];
const logitsOf = (model: ReturnType<typeof loadModel>) => Array.from(forward(model, ids).logits.dataSync());

/** Every tensor of a saved folder (any layout) as {dtype, bytes}. */
function savedTensors(dir: string): Map<string, { dtype: string; bits: Uint16Array | Float32Array }> {
  const out = new Map<string, { dtype: string; bits: Uint16Array | Float32Array }>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.safetensors'))) {
    const { entries, dataStart } = readSafetensorsHeader(join(dir, file));
    const bytes = readFileSync(join(dir, file));
    for (const [name, entry] of entries) {
      const raw = new Uint8Array(bytes.subarray(dataStart + entry.data_offsets[0], dataStart + entry.data_offsets[1])).buffer;
      out.set(name, { dtype: entry.dtype, bits: entry.dtype === 'F32' ? new Float32Array(raw) : new Uint16Array(raw) });
    }
  }
  return out;
}

describe('published layouts', () => {
  it('loads a sharded bf16 Qwen2 folder (tied, q/k/v bias) to the exact values, and saves it back bf16, sharded, byte for byte', async () => {
    const dir = join(scratch, 'qwen-bf16');
    const generation = { bos_token_id: 3, eos_token_id: [4, 5], pad_token_id: 5, do_sample: true, temperature: 0.7, top_p: 0.8, top_k: 20, repetition_penalty: 1.05 };
    const { parsed, tensors } = writePublished(dir, qwenConfig, 'BF16', 1);
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify(generation));
    const loaded = loadModel(dir);
    const reference = modelFromWeights(parsed, new Map(tensors.map((t) => [t.name, tf.tensor(t.values, t.shape)])));
    expect(logitsOf(loaded)).toEqual(logitsOf(reference));
    expect(loaded.generation).toMatchObject(generation);

    // Saved with 1 KB shards: an index and several shards, every tensor BF16 with the bytes it came with.
    const out = join(scratch, 'qwen-bf16-saved');
    await saveModel(loaded, out, {}, { maxShardBytes: 4096 });
    const index = JSON.parse(readFileSync(join(out, 'model.safetensors.index.json'), 'utf8'));
    const shardFiles = [...new Set(Object.values(index.weight_map as Record<string, string>))];
    expect(shardFiles.length).toBeGreaterThan(2);
    expect(shardFiles[0]).toBe(`model-00001-of-${String(shardFiles.length).padStart(5, '0')}.safetensors`);
    expect(index.metadata.total_size).toBe(tensors.reduce((n, t) => n + 2 * t.values.length, 0));
    const saved = savedTensors(out);
    expect([...saved.keys()].sort()).toEqual(tensors.map((t) => t.name).sort()); // no lm_head written
    for (const t of tensors) {
      expect(saved.get(t.name)?.dtype).toBe('BF16');
      expect(Array.from(saved.get(t.name)!.bits)).toEqual(Array.from(t.bits));
    }
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'))).toMatchObject({ torch_dtype: 'bfloat16', tie_word_embeddings: true, eos_token_id: 4 });
    expect(JSON.parse(readFileSync(join(out, 'generation_config.json'), 'utf8'))).toEqual(generation);
    const again = loadModel(out);
    expect(logitsOf(again)).toEqual(logitsOf(reference));
    // Trained weights go out float32 when asked (the training stages do): one file, F32.
    await saveModel(loaded, join(scratch, 'qwen-f32'), {}, { dtype: 'float32' });
    expect(savedTensors(join(scratch, 'qwen-f32')).get('model.norm.weight')?.dtype).toBe('F32');
    expect(readdirSync(join(scratch, 'qwen-f32'))).toContain('model.safetensors');
    for (const m of [loaded, reference, again]) disposeModel(m);
  });

  it('loads fp16 weights to the exact values and writes them back as F16', async () => {
    const dir = join(scratch, 'qwen-f16');
    const { parsed, tensors } = writePublished(dir, { ...qwenConfig, torch_dtype: 'float16' }, 'F16', 2);
    const loaded = loadModel(dir);
    const reference = modelFromWeights(parsed, new Map(tensors.map((t) => [t.name, tf.tensor(t.values, t.shape)])));
    expect(logitsOf(loaded)).toEqual(logitsOf(reference));
    const out = join(scratch, 'qwen-f16-saved');
    await saveModel(loaded, out);
    const saved = savedTensors(out);
    for (const t of tensors) expect(Array.from(saved.get(t.name)!.bits)).toEqual(Array.from(t.bits));
    for (const m of [loaded, reference]) disposeModel(m);
  });

  it('rounds float32 to bf16 and f16 to nearest even', () => {
    // bf16 keeps the top 16 bits: 0x3F808000 (1 + 2^-8) is a tie between 0x3F80 and 0x3F81 -> even 0x3F80;
    // 0x3F818000 ties between 0x3F81 and 0x3F82 -> 0x3F82; 0x3F808001 is above the tie -> 0x3F81.
    const words = Uint32Array.from([0x3f808000, 0x3f818000, 0x3f808001, 0xbf800000, 0x7fc00001]);
    expect(Array.from(floatToBfloat16(new Float32Array(words.buffer)))).toEqual([0x3f80, 0x3f82, 0x3f81, 0xbf80, 0x7fc0]);
    // f16: 1 + 2^-11 ties between 1 and 1 + 2^-10 -> 1 (0x3C00); 1 + 3 * 2^-11 -> 1 + 2^-9 (0x3C02);
    // 65520 rounds to infinity; 2^-25 ties between 0 and the smallest subnormal -> 0; 3 * 2^-25 -> 2 * 2^-24.
    expect([1 + 2 ** -11, 1 + 3 * 2 ** -11, 65520, 2 ** -25, 3 * 2 ** -25, -2].map(floatToHalf)).toEqual([0x3c00, 0x3c02, 0x7c00, 0, 2, 0xc000]);
  });
});

describe('rope_scaling', () => {
  // theta (16 / pi)^2: head_dim 4's second inverse frequency theta^-1/2 = pi / 16, a wavelength of exactly 32.
  const theta = (16 / Math.PI) ** 2;
  const config = (rope_scaling: unknown) => parseModelConfig({ ...qwenConfig, head_dim: 4, hidden_size: 16, rope_theta: theta, rope_scaling }, 'cfg/config.json');

  it('linear: position p is scaled position p / factor', () => {
    const plain = ropeTableValues(16, 4, theta);
    const scaled = ropeTableValues(16, 4, theta, ropeScalingOf(config({ type: 'linear', factor: 2 })));
    expect(Array.from(scaled.cos.slice(2 * 4 * 3, 2 * 4 * 3 + 4))).toEqual(Array.from(plain.cos.slice(4 * 3, 4 * 3 + 4)));
    expect(Array.from(scaled.sin.slice(2 * 4 * 5, 2 * 4 * 5 + 4))).toEqual(Array.from(plain.sin.slice(4 * 5, 4 * 5 + 4)));
  });

  it('llama3: high frequencies kept, medium ones blended (Llama 3.1 rule)', () => {
    // head_dim 4: inverse frequencies 1 (wavelength 2 pi = 6.28) and pi / 16 (wavelength 32).
    // original context 64, low_freq_factor 1, high_freq_factor 4: high-frequency cut 64 / 4 = 16, low 64.
    // 6.28 < 16 is kept; 32 is medium: smooth = (64 / 32 - 1) / (4 - 1) = 1/3, so the frequency is
    // (2/3) f / 8 + (1/3) f = f * (1/12 + 1/3) = f * 5/12.
    const scaling = ropeScalingOf(config({ rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 }));
    const f = Math.PI / 16;
    const tables = ropeTableValues(8, 4, theta, scaling);
    const position = 7;
    expect(tables.cos[position * 4]).toBeCloseTo(Math.cos(position), 6);
    expect(tables.cos[position * 4 + 1]).toBeCloseTo(Math.cos(position * f * (5 / 12)), 6);
    // The model's own tables follow its config.
    const dir = join(scratch, 'llama3-rope');
    writePublished(dir, { ...qwenConfig, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 } }, 'BF16', 3);
    const model = loadModel(dir);
    const expected = ropeTableValues(64, 8, 1000000, { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 });
    expect(Array.from(model.rope.cos.dataSync())).toEqual(Array.from(expected.cos));
    expect(Array.from(model.rope.cos.dataSync())).not.toEqual(Array.from(ropeTableValues(64, 8, 1000000).cos));
    disposeModel(model);
  });

  it('refuses the types it does not apply, naming the key and the value', () => {
    expect(() => config({ rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32768 })).toThrow(
      /cfg\/config\.json: invalid model config\n {2}rope_scaling\.rope_type: "yarn" is not implemented \(applied: default, linear, llama3\)/,
    );
    expect(() => config({ type: 'dynamic', factor: 2 })).toThrow(/rope_scaling\.type: "dynamic" is not implemented/);
    expect(() => config({ type: 'linear' })).toThrow(/rope_scaling: linear needs factor/);
    expect(ropeScalingOf(config(null))).toEqual({ rope_type: 'default' });
    expect(ropeScalingOf(config({ rope_type: 'default' }))).toEqual({ rope_type: 'default' });
  });
});

describe('generation_config.json', () => {
  it('maps HF defaults: greedy without do_sample, every end id, sampling values when given', () => {
    expect(generationDefaults(undefined)).toEqual({ temperature: 0, topK: 0, topP: 1, eosTokenIds: [], repetitionPenalty: 1 });
    expect(generationDefaults({ eos_token_id: 7, do_sample: false, temperature: 0.7, repetition_penalty: 1.1 })).toEqual({ temperature: 0, topK: 0, topP: 1, eosTokenIds: [7], repetitionPenalty: 1.1 });
    expect(generationDefaults({ eos_token_id: [4, 5], do_sample: true, temperature: 0.7, top_p: 0.8, max_new_tokens: 32 })).toEqual({
      temperature: 0.7,
      topK: 50,
      topP: 0.8,
      eosTokenIds: [4, 5],
      repetitionPenalty: 1,
      maxNewTokens: 32,
    });
  });

  it('names the file and the key of a bad value', () => {
    const dir = join(scratch, 'bad-generation');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: 'x', top_p: 2 }));
    expect(() => readGenerationConfig(dir)).toThrow(/bad-generation\/generation_config\.json: key eos_token_id: .*; key top_p: /);
    expect(readGenerationConfig(scratch)).toBeUndefined();
  });
});

describe('sft init from a sharded folder', () => {
  it('declares the index and every shard as user files, so a changed shard reruns sft', () => {
    const dir = join(scratch, 'models', 'sharded');
    writePublished(dir, qwenConfig, 'BF16', 4);
    const files = sftStage.userFiles?.({ init: 'models/sharded' } as never, scratch);
    expect(files).toEqual([
      'models/sharded/config.json',
      'models/sharded/model.safetensors.index.json',
      'models/sharded/model-00001-of-00003.safetensors',
      'models/sharded/model-00002-of-00003.safetensors',
      'models/sharded/model-00003-of-00003.safetensors',
    ]);
  });
});
