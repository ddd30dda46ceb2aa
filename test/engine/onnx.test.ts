/**
 * The ONNX export and the onnxruntime-node path against the PyTorch reference fixtures (see
 * parity.test.ts) and against the tfjs engine on the same weights: logits, greedy and sampled
 * tokens, generation and teacher-forced log-probs. The Qwen2 fixture covers qkv bias, tied
 * embeddings, head_dim != d / H and one kv head; the Llama one two kv heads of two query heads each.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import { generate, initEngine, loadModel, sequenceLogprobs, type GenerateOptions, type Model } from '../../packages/engine/src/index.ts';
import {
  closeOnnxDecoder,
  exportCheckpoint,
  exportModel,
  generateOnnx,
  openOnnxDecoder,
  sequenceLogprobsOnnx,
  ONNX_DATA_FILE,
  type OnnxDecoder,
} from '../../packages/engine/src/onnx/index.ts';
import { openInference } from '../../packages/engine/src/generate/inference.ts';

interface Reference {
  input_ids: number[][];
  logits: number[][][];
  greedy: Array<{ prompt: number[]; tokens: number[] }>;
}

const here = join(import.meta.dirname, 'reference');

beforeAll(async () => {
  await initEngine({ backend: 'wasm' });
});

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)));
  return worst;
}

/** Full-sequence logits (B, T, V) from the ONNX graph: one teacher-forced run, no past. */
async function onnxLogits(decoder: OnnxDecoder, ids: number[][]): Promise<Float32Array> {
  const { ort, session } = decoder;
  const int64 = (rows: number[][]) => new ort.Tensor('int64', BigInt64Array.from(rows.flat(), (v) => BigInt(v)), [rows.length, rows[0]!.length]);
  const kv = (decoder.config.num_key_value_heads ?? decoder.config.num_attention_heads) as number;
  const hd = decoder.config.head_dim ?? decoder.config.hidden_size / decoder.config.num_attention_heads;
  const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {
    input_ids: int64(ids),
    attention_mask: int64(ids.map((r) => r.map(() => 1))),
    position_ids: int64(ids.map((r) => r.map((_, t) => t))),
  };
  for (let i = 0; i < decoder.config.num_hidden_layers; i++) {
    for (const part of ['key', 'value']) feeds[`past_key_values.${i}.${part}`] = new ort.Tensor('float32', new Float32Array(0), [ids.length, kv, 0, hd]);
  }
  return (await session.run(feeds)).logits!.data as Float32Array;
}

describe.each(['llama-tiny', 'qwen2-tiny'])('%s exported to ONNX', (name) => {
  const dir = join(here, name);
  const reference = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as Reference;
  let model: Model;
  let decoder: OnnxDecoder;
  beforeAll(async () => {
    model = loadModel(dir);
    decoder = await openOnnxDecoder(exportModel(model).model, model.config, { threads: 1 });
  });
  afterAll(() => closeOnnxDecoder(decoder));

  it('gives the PyTorch reference logits within 1e-4', async () => {
    expect(maxAbsDiff(await onnxLogits(decoder, reference.input_ids), reference.logits.flat(2))).toBeLessThanOrEqual(1e-4);
  });

  it('decodes the reference greedy tokens, batched with left padding through the KV cache', async () => {
    const greedy = { maxNewTokens: 10, temperature: 0, topK: 0, topP: 1, eosTokenIds: [], rng: new Rng(1, 'g') };
    const got = await generateOnnx(decoder, reference.greedy.map((g) => g.prompt), greedy);
    expect(got.map((g) => g.tokens)).toEqual(reference.greedy.map((g) => g.tokens));
  });

  it('samples the tokens tfjs samples for the same seed, with log-probs within 1e-4', async () => {
    const prompts = [[5, 6, 7], [10, 20, 30, 40, 50], [1]];
    const options = (seed: number): GenerateOptions => ({ maxNewTokens: 12, temperature: 1.3, topK: 20, topP: 0.95, eosTokenIds: [2], rng: new Rng(seed, 'sample') });
    for (const seed of [3, 4]) {
      const viaTfjs = await generate(model, prompts, options(seed));
      const viaOnnx = await generateOnnx(decoder, prompts, options(seed));
      expect(viaOnnx.map((g) => g.tokens)).toEqual(viaTfjs.map((g) => g.tokens));
      expect(viaOnnx.map((g) => g.finishReason)).toEqual(viaTfjs.map((g) => g.finishReason));
      expect(maxAbsDiff(viaOnnx.flatMap((g) => g.logprobs), viaTfjs.flatMap((g) => g.logprobs))).toBeLessThanOrEqual(1e-4);
    }
  });

  it('scores completions teacher-forced as tfjs sequenceLogprobs does, within 1e-4', async () => {
    const batch = [
      { prompt: [5, 6, 7], completion: [8, 9, 2] },
      { prompt: [10, 20, 30, 40, 50, 60], completion: [1] },
      { prompt: [4], completion: [33, 12, 19, 40, 2] },
    ];
    const got = await sequenceLogprobsOnnx(decoder, batch);
    const { logprobs } = sequenceLogprobs(model, batch, { frozen: true });
    const want = (logprobs.arraySync() as number[][]).map((row, b) => row.slice(0, batch[b]!.completion.length));
    logprobs.dispose();
    expect(got.map((r) => r.length)).toEqual([3, 1, 5]);
    expect(maxAbsDiff(got.flat(), want.flat())).toBeLessThanOrEqual(1e-4);
  });
});

describe('exportCheckpoint', () => {
  const work = mkdtempSync(join(tmpdir(), 'lore-onnx-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it.each(['llama-tiny', 'qwen2-tiny'])('gives a %s folder that transformers.js loads (local files only) and decodes greedily as the reference', async (name) => {
    const reference = JSON.parse(readFileSync(join(here, name, 'reference.json'), 'utf8')) as Reference;
    cpSync(join(here, name), join(work, name), { recursive: true });
    await exportCheckpoint(join(work, name));
    const transformers = await import('@huggingface/transformers');
    transformers.env.allowRemoteModels = false;
    transformers.env.localModelPath = work;
    const model = await transformers.AutoModelForCausalLM.from_pretrained(name, { local_files_only: true, dtype: 'fp32' });
    for (const { prompt, tokens } of reference.greedy) {
      const ids = (values: number[]) => new transformers.Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), [1, values.length]);
      const output = (await model.generate({ input_ids: ids(prompt), attention_mask: ids(prompt.map(() => 1)), max_new_tokens: tokens.length, do_sample: false })) as InstanceType<typeof transformers.Tensor>;
      expect((output.tolist() as bigint[][])[0]!.slice(prompt.length).map(Number)).toEqual(tokens);
    }
    await model.dispose();
  });

  it('writes onnx/model.onnx, with external weights past the threshold giving the same logits', async () => {
    const dir = join(work, 'llama');
    cpSync(join(here, 'llama-tiny'), dir, { recursive: true });
    const inline = await exportCheckpoint(dir);
    const inlineSize = statSync(inline).size;
    const model = loadModel(dir);
    const ids = [[1, 17, 42, 5]];
    const fromInline = await openOnnxDecoder(inline, model.config, { threads: 1 });
    const want = await onnxLogits(fromInline, ids);
    await closeOnnxDecoder(fromInline);
    // Threshold 0: every weight of 1 KiB or more moves to model.onnx_data beside the graph.
    const external = await exportCheckpoint(dir, { externalThreshold: 0 });
    expect(existsSync(join(dir, 'onnx', ONNX_DATA_FILE))).toBe(true);
    expect(statSync(external).size).toBeLessThan(inlineSize / 2);
    const fromExternal = await openOnnxDecoder(external, model.config, { threads: 1 });
    expect(maxAbsDiff(await onnxLogits(fromExternal, ids), want)).toBe(0);
    await closeOnnxDecoder(fromExternal);
    tf.dispose([...model.params.values()]);
  });
});

describe('openInference', () => {
  it('follows the model after refresh (what GRPO calls after each update), and records which runtime ran', async () => {
    const model = loadModel(join(here, 'llama-tiny'));
    const viaOnnx = await openInference(model, { inference: 'onnxruntime', threads: 1 });
    const viaTfjs = await openInference(model, { inference: 'tfjs', threads: 1 });
    expect(viaOnnx.record).toMatchObject({ inference: 'onnxruntime', inference_threads: '1' });
    expect(viaTfjs.record).toEqual({ inference: 'tfjs' });
    const batch = [{ prompt: [5, 6, 7], completion: [8, 9, 2, 40] }];
    const gap = async () => maxAbsDiff((await viaOnnx.sequenceLogprobs(batch)).flat(), (await viaTfjs.sequenceLogprobs(batch)).flat());
    expect(await gap()).toBeLessThanOrEqual(1e-4);
    // An "update": the output head doubled, which sharpens every next-token distribution.
    const head = model.params.get('lm_head.weight')!;
    head.assign(tf.mul(head, 2));
    expect(await gap()).toBeGreaterThan(1e-2); // the session still holds the old weights
    expect(await viaOnnx.refresh()).toBeGreaterThan(0);
    expect(await gap()).toBeLessThanOrEqual(1e-4);
    await viaOnnx.close();
    tf.dispose([...model.params.values()]);
  });
});
