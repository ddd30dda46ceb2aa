/**
 * The engine against the PyTorch reference on webgpu (see parity-cases.ts), and what webgpu needed
 * supplied. Without a GPU, Dawn runs on Mesa's llvmpipe through OpenGL ES (apt mesa-vulkan-drivers
 * libegl-mesa0 libgles2, which .ci/run installs); where no adapter can be had the whole file skips
 * and says why.
 */
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { AdamW, causalLmLoss, disposeModel, initEngine, loadModel, padBatch, trainStep } from '../../packages/engine/src/index.ts';
import { describeParity } from './parity-cases.ts';

const unavailable = await initEngine({ backend: 'webgpu' }).then(
  () => undefined,
  (error: Error) => error.message,
);

if (unavailable) describe.skip(`webgpu parity (${unavailable})`, () => it('needs a webgpu adapter', () => {}));
else {
  describeParity('webgpu');

  describe('webgpu kernels supplied by the engine', () => {
    it('AddN sums more tensors than one shader may bind', async () => {
      // 0 + 1 + ... + 19 = 190 in every element; the device binds at most 16 storage buffers.
      const sum = tf.addN(Array.from({ length: 20 }, (_, i) => tf.fill([3], i)));
      expect(Array.from(await sum.data())).toEqual([190, 190, 190]);
    });

    it('AdamW steps with clipping (a global norm over every parameter) lower the loss', async () => {
      const model = loadModel(join(import.meta.dirname, 'reference', 'qwen2-tiny'));
      const optimizer = new AdamW(model.params, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 });
      const batch = padBatch([[1, 5, 9, 13, 17, 21], [2, 6, 10, 14, 18, 22]].map((ids) => ({ ids, lossMask: ids.map(() => 1) })));
      const losses: number[] = [];
      for (let i = 0; i < 4; i++) losses.push((await trainStep(model, optimizer, [batch], (b) => causalLmLoss(model, b), { lr: 1e-2, maxGradNorm: 1 })).loss);
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(losses[3]!).toBeLessThan(losses[0]!);
      optimizer.dispose();
      disposeModel(model);
    });
  });
}
