/**
 * The cpu backend (the last fallback of `auto`) runs the same model: logits of the Llama fixture
 * match the PyTorch reference there too. Its own file, so its process starts cpu, not wasm.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { forward, initEngine, loadModel } from '../../packages/engine/src/index.ts';

it('cpu backend: llama-tiny logits within 1e-4 of the reference', async () => {
  const record = await initEngine({ backend: 'cpu' });
  expect(record.backend).toBe('cpu');
  const dir = join(import.meta.dirname, 'reference', 'llama-tiny');
  const reference = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as { input_ids: number[][]; logits: number[][][] };
  const got = forward(loadModel(dir), reference.input_ids).logits.dataSync();
  const want = reference.logits.flat(2);
  expect(Math.max(...want.map((w, i) => Math.abs(w - got[i]!)))).toBeLessThanOrEqual(1e-4);
});
