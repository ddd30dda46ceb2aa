/**
 * scripts/real-fixture.ts at a small shape: the folder is what a published Qwen2.5 checkpoint looks
 * like (bf16 shards under an index, no lm_head, q/k/v bias, generation_config.json, a Qwen
 * tokenizer), loads through the engine and the tokenizer module, and is the same for the same seed.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { disposeModel, initEngine, loadModel, parameterCount, parameterShapes, parseModelConfig } from '../../packages/engine/src/index.ts';
import { loadTokenizer } from '../../packages/engine/src/tokenizer/tokenizer.ts';
import { readSafetensorsHeader } from '../../packages/engine/src/io/safetensors.ts';
import { realConfig, writeRealFixture } from '../../scripts/real-fixture.ts';

const scratch = mkdtempSync(join(tmpdir(), 'real-fixture-'));
beforeAll(async () => {
  await initEngine({ backend: 'wasm' });
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const small = { layers: 2, hidden: 64, intermediate: 96, heads: 4, kvHeads: 2, maxPositions: 256, maxShardBytes: 8e6 };

describe('scripts/real-fixture.ts', () => {
  it("has Qwen2.5-0.5B's shape: 494,032,768 parameters at 24 layers, d 896, vocab 151,936, tied", () => {
    // Qwen2.5-0.5B's model card: 0.49B parameters. By hand: embedding 151,936 x 896 = 136,134,656;
    // per layer q 896x896 + 896, k and v 128x896 + 128 each, o 896x896, MLP 3 x 896 x 4864,
    // 2 norms x 896 = 14,912,384; x 24 = 357,897,216; final norm 896.
    const config = parseModelConfig(realConfig(), 'real');
    const total = parameterShapes(config).reduce((n, [, shape]) => n + shape.reduce((a, b) => a * b, 1), 0);
    expect(total).toBe(136_134_656 + 357_897_216 + 896);
    expect(parameterShapes(config).some(([name]) => name === 'lm_head.weight')).toBe(false);
  });

  it('writes bf16 shards with an index, generation_config and a Qwen tokenizer that the engine loads', async () => {
    const dir = join(scratch, 'a');
    const { parameters, files } = await writeRealFixture(dir, small);
    expect(files[files.length - 1]).toBe('model.safetensors.index.json');
    expect(files.length).toBeGreaterThan(2);
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
    expect(index.weight_map['model.layers.1.self_attn.k_proj.bias']).toMatch(/^model-0000\d-of-0000\d\.safetensors$/);
    for (const shard of files.slice(0, -1)) for (const entry of readSafetensorsHeader(join(dir, shard)).entries.values()) expect(entry.dtype).toBe('BF16');

    const model = loadModel(dir);
    expect(parameterCount(model)).toBe(parameters);
    expect(model.config).toMatchObject({ vocab_size: 151936, tie_word_embeddings: true, rope_theta: 1000000, torch_dtype: 'bfloat16' });
    expect(model.dims.qkvBias).toBe(true);
    expect(model.generation?.eos_token_id).toEqual([151645, 151643]);
    // normal(0, 0.02) weights: the embedding's std within 2 % of 0.02 (9.7M draws), norms exactly 1.
    const embed = (await model.params.get('model.embed_tokens.weight')!.data()) as Float32Array;
    let squares = 0;
    for (const v of embed) squares += v * v;
    expect(Math.sqrt(squares / embed.length)).toBeGreaterThan(0.0196);
    expect(Math.sqrt(squares / embed.length)).toBeLessThan(0.0204);
    expect(new Set(await model.params.get('model.norm.weight')!.data()).size).toBe(1);
    disposeModel(model);

    // The Qwen tokenizer: the ids Qwen3's own tokenizer gives this text, eos <|im_end|> (151645), inside the vocabulary.
    const tokenizer = await loadTokenizer(dir);
    expect(tokenizer.encode('Hello world, ergonomic office chair')).toEqual([9707, 1879, 11, 96691, 5163, 10496]);
    expect(tokenizer.eosTokenId).toBe(151645);
    expect(tokenizer.vocabSize).toBeLessThanOrEqual(151936);
  });

  it('is the same bytes for the same seed and differs for another', async () => {
    await writeRealFixture(join(scratch, 'b'), small);
    await writeRealFixture(join(scratch, 'c'), { ...small, seed: 1 });
    const shard = (name: string) => readFileSync(join(scratch, name, readdirSync(join(scratch, name)).find((f) => f.startsWith('model-00001'))!));
    expect(shard('b').equals(shard('a'))).toBe(true);
    expect(shard('c').equals(shard('a'))).toBe(false);
  });
});
