/**
 * Parity with an independent PyTorch implementation (test/engine/reference/reference.py, run as
 * recorded in each reference.json's "command"): same safetensors in, same logits, loss, gradients
 * and greedy tokens out. The Qwen2 fixture adds qkv bias, tied embeddings, head_dim != d / H,
 * one kv head and BF16 weights. Test files call `describeParity` after starting their backend.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import { forward, generate, loadModel, maskedLmLoss } from '../../packages/engine/src/index.ts';

interface Reference {
  input_ids: number[][];
  loss_mask: number[][];
  logits: number[][][];
  loss: number;
  grads: Record<string, number[]>;
  greedy: Array<{ prompt: number[]; tokens: number[] }>;
}

const here = join(import.meta.dirname, 'reference');

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)));
  return worst;
}

/** The parity checks, on whichever backend the calling test file started (reads are async: webgpu has no sync read). */
export function describeParity(backend: string): void {
describe.each(['llama-tiny', 'qwen2-tiny'])(`%s matches the PyTorch reference on ${backend}`, (name) => {
  const dir = join(here, name);
  const reference = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as Reference;

  it('logits within 1e-4 and the masked loss within 1e-5', async () => {
    const model = loadModel(dir);
    const { logits } = forward(model, reference.input_ids);
    const loss = maskedLmLoss(model, reference.input_ids, reference.loss_mask);
    expect(maxAbsDiff(await logits.data(), reference.logits.flat(2))).toBeLessThanOrEqual(1e-4);
    expect(Math.abs((await loss.data())[0]! - reference.loss)).toBeLessThanOrEqual(1e-5);
    tf.dispose([logits, loss]);
  });

  it('gradients of the loss match', async () => {
    const model = loadModel(dir);
    const names = Object.keys(reference.grads);
    const { grads } = tf.variableGrads(
      () => maskedLmLoss(model, reference.input_ids, reference.loss_mask),
      names.map((n) => model.params.get(n)!),
    );
    for (const n of names) {
      const got = await grads[model.params.get(n)!.name]!.data();
      const want = reference.grads[n]!;
      const scale = Math.max(...want.map(Math.abs));
      // Relative to the tensor's largest gradient: float32 sums in a different order.
      expect(maxAbsDiff(got, want) / scale, n).toBeLessThanOrEqual(1e-4);
    }
  });

  it('greedy generation with the KV cache, batched with left padding, gives the same tokens', async () => {
    const model = loadModel(dir);
    const prompts = reference.greedy.map((g) => g.prompt);
    const out = await generate(model, prompts, { maxNewTokens: 10, temperature: 0, topK: 0, topP: 1, eosTokenIds: [], rng: new Rng(0) });
    expect(out.map((g) => g.tokens)).toEqual(reference.greedy.map((g) => g.tokens));
    expect(out.every((g) => g.finishReason === 'length' && g.logprobs.every((lp) => lp < 0))).toBe(true);
  });
});
}
