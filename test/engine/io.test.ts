import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import {
  createModel,
  disposeModel,
  forward,
  initEngine,
  loadModel,
  parameterShapes,
  parseModelConfig,
  presets,
  readSafetensors,
  saveModel,
  writeSafetensors,
} from '../../packages/engine/src/index.ts';

const scratch = mkdtempSync(join(tmpdir(), 'engine-io-'));
beforeAll(async () => {
  await initEngine({ backend: 'wasm' });
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A safetensors file from raw parts, to test reading what other writers produce. */
function rawSafetensors(path: string, header: object, data: Buffer): void {
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([length, json, data]));
}

const u16 = (...values: number[]) => Buffer.from(Uint16Array.from(values).buffer);

describe('safetensors', () => {
  it('reads F16 and BF16 into float32', () => {
    // F16: 0x3C00 = 1, 0xC000 = -2, 0x3555 = (1 + 341/1024) * 2^-2 = 0.333251953125,
    //      0x0001 = 2^-24 (smallest subnormal), 0x7C00 = +inf.
    // BF16: the top 16 bits of a float32: 0x3F80 = 1, 0xC040 = -3, 0x4049 = 3.140625.
    const path = join(scratch, 'halves.safetensors');
    rawSafetensors(
      path,
      { half: { dtype: 'F16', shape: [5], data_offsets: [0, 10] }, brain: { dtype: 'BF16', shape: [3, 1], data_offsets: [10, 16] } },
      Buffer.concat([u16(0x3c00, 0xc000, 0x3555, 0x0001, 0x7c00), u16(0x3f80, 0xc040, 0x4049)]),
    );
    const tensors = readSafetensors(path);
    expect(Array.from(tensors.get('half')!.dataSync())).toEqual([1, -2, 0.333251953125, 2 ** -24, Infinity]);
    expect(tensors.get('brain')!.shape).toEqual([3, 1]);
    expect(Array.from(tensors.get('brain')!.dataSync())).toEqual([1, -3, 3.140625]);
  });

  it('writes F32 that it reads back exactly, header padded to 8 bytes with format pt', async () => {
    const path = join(scratch, 'f32.safetensors');
    await writeSafetensors(path, new Map<string, tf.Tensor>([['a.weight', tf.tensor2d([[1.5, -2], [3, 4e-7]])], ['b', tf.tensor1d([7])]]));
    const bytes = readFileSync(path);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    expect(headerLength % 8).toBe(0);
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString());
    expect(header.__metadata__).toEqual({ format: 'pt' });
    expect(header['a.weight']).toEqual({ dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] });
    expect(header.b).toEqual({ dtype: 'F32', shape: [1], data_offsets: [16, 20] });
    const back = readSafetensors(path);
    expect(Array.from(back.get('a.weight')!.dataSync())).toEqual(Array.from(Float32Array.from([1.5, -2, 3, 4e-7])));
  });

  it('names the file and the tensor when data does not fit', () => {
    const path = join(scratch, 'short.safetensors');
    rawSafetensors(path, { w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, Buffer.alloc(8));
    expect(() => readSafetensors(path)).toThrow(`${path}: tensor w: data_offsets [0, 16] do not hold 4 F32 values`);
    rawSafetensors(path, { w: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, Buffer.alloc(1));
    expect(() => readSafetensors(path)).toThrow(/short\.safetensors: tensor w: dtype F8_E4M3 is not supported/);
  });
});

const config = () => presets.tiny(48, { num_hidden_layers: 2, max_position_embeddings: 32 });
const ids = [[1, 5, 9, 2, 7]];

describe('saveModel / loadModel', () => {
  it('writes an HF folder that loads back to the same logits', async () => {
    const model = createModel(config(), new Rng(3, 'engine/init'));
    const dir = join(scratch, 'saved');
    await saveModel(model, dir, { bosTokenId: 1, eosTokenId: [2, 3], padTokenId: 0 });
    const written = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect(written).toMatchObject({ architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'float32', vocab_size: 48, num_key_value_heads: 2, eos_token_id: [2, 3] });
    expect(JSON.parse(readFileSync(join(dir, 'generation_config.json'), 'utf8'))).toMatchObject({ bos_token_id: 1, eos_token_id: [2, 3], pad_token_id: 0 });
    const names = [...readSafetensors(join(dir, 'model.safetensors')).keys()];
    expect(names).toContain('model.layers.1.self_attn.q_proj.weight');
    expect(names).toContain('model.embed_tokens.weight');
    expect(names).toContain('lm_head.weight');
    const loaded = loadModel(dir);
    expect(Array.from(forward(loaded, ids).logits.dataSync())).toEqual(Array.from(forward(model, ids).logits.dataSync()));
    disposeModel(model);
    disposeModel(loaded);
  });

  it('gives back all of a model\'s memory when it is disposed, loaded or created', async () => {
    const dir = join(scratch, 'freed');
    const made = createModel(config(), new Rng(4, 'engine/init'));
    await saveModel(made, dir, {}, { dtype: 'bfloat16' });
    disposeModel(made);
    // A process that loads checkpoints in turn (eval) must end each one where it started.
    const before = tf.memory();
    for (let round = 0; round < 2; round++) {
      const loaded = loadModel(dir);
      const weightBytes = [...loaded.params.values()].reduce((n, p) => n + p.size * 4, 0);
      // Held while loaded: the float32 weights, once (the loaded tensors are not kept beside the variables).
      expect(tf.memory().numBytes - before.numBytes).toBeLessThanOrEqual(weightBytes + 64 * 1024);
      disposeModel(loaded);
      expect(tf.memory().numBytes).toBe(before.numBytes);
      expect(tf.memory().numTensors).toBe(before.numTensors);
    }
    const created = createModel(config(), new Rng(5, 'engine/init'));
    disposeModel(created);
    expect(tf.memory().numBytes).toBe(before.numBytes);
  });

  it('loads sharded weights through model.safetensors.index.json', async () => {
    const model = createModel(config(), new Rng(4, 'engine/init'));
    const dir = join(scratch, 'sharded');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), JSON.stringify(model.config));
    const entries = [...model.params.entries()];
    const half = Math.floor(entries.length / 2);
    const shards = [entries.slice(0, half), entries.slice(half)];
    const weightMap: Record<string, string> = {};
    for (const [i, shard] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await writeSafetensors(join(dir, file), new Map<string, tf.Tensor>(shard));
      for (const [name] of shard) weightMap[name] = file;
    }
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const loaded = loadModel(dir);
    expect(Array.from(forward(loaded, ids).logits.dataSync())).toEqual(Array.from(forward(model, ids).logits.dataSync()));
    disposeModel(loaded);

    // A shard that lacks a tensor the index promises is named.
    weightMap['model.norm.weight'] = 'model-00001-of-00002.safetensors';
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
    expect(() => loadModel(dir)).toThrow(/weight_map puts model\.norm\.weight in model-00001-of-00002\.safetensors, which does not hold it/);
    disposeModel(model);
  });

  it('reports a weight whose shape disagrees with config.json', async () => {
    const model = createModel(config(), new Rng(5, 'engine/init'));
    const dir = join(scratch, 'mismatch');
    await saveModel(model, dir);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...model.config, intermediate_size: 64 }));
    expect(() => loadModel(dir)).toThrow(/mismatch: weight model\.layers\.0\.mlp\.gate_proj\.weight: expected shape \[64,128\] from config, found \[352,128\]/);
    disposeModel(model);
  });
});

describe('model config', () => {
  it('reports every problem with its key', () => {
    const bad = { architectures: ['GPT2LMHeadModel'], model_type: 'llama', vocab_size: 10, hidden_size: 64, intermediate_size: 8, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 3 };
    let message = '';
    try {
      parseModelConfig(bad, 'ckpt/config.json');
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/^ckpt\/config\.json: invalid model config\n/);
    expect(message).toMatch(/architectures\.0: /);
    const good = { ...bad, architectures: ['Qwen2ForCausalLM'] };
    expect(() => parseModelConfig(good, 'x.json')).toThrow(/model_type: Qwen2ForCausalLM needs "qwen2", found "llama"\n.*num_key_value_heads: 3 must divide num_attention_heads 4/s);
    expect(() => parseModelConfig({ ...good, model_type: 'qwen2', num_key_value_heads: 2, rope_scaling: { type: 'yarn', factor: 2 } }, 'x.json')).toThrow(/rope_scaling/);
  });

  it('presets are about 1M (tiny) and 10M (small) parameters', () => {
    // tiny at vocab 512: embed + head 2*512*128 = 131,072; per layer q 128*128 + k,v 2*128*64 +
    // o 128*128 + SwiGLU 3*128*352 + 2 norms*128 = 184,576, times 4 = 738,304; final norm 128.
    const count = (c: ReturnType<typeof presets.tiny>) => parameterShapes(c).reduce((n, [, shape]) => n + shape.reduce((a, b) => a * b, 1), 0);
    expect(count(presets.tiny(512))).toBe(131_072 + 738_304 + 128);
    // small at vocab 8000: 2*8000*256 = 4,096,000; per layer 65,536 + 65,536 + 65,536 + 540,672 + 512 = 737,792, times 8 = 5,902,336; + 256.
    expect(count(presets.small(8000))).toBe(4_096_000 + 5_902_336 + 256);
  });
});

