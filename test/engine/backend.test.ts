import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { selectBackend } from '../../packages/engine/src/runtime/backend.ts';
import { initEngine } from '../../packages/engine/src/index.ts';

const installed = async (pkg: string) => import(pkg).then(() => true, () => false);
const hasTfjsNode = await installed('@tensorflow/tfjs-node');
const hasTfjsNodeGpu = await installed('@tensorflow/tfjs-node-gpu');

describe('initEngine', () => {
  it('starts wasm once and returns the same record to later callers', async () => {
    const first = await initEngine({ backend: 'wasm' });
    const again = await initEngine({ backend: 'auto' });
    expect(again).toBe(first);
    expect(first).toMatchObject({ backend: 'wasm', tfjs: '4.22.0', requested: 'wasm', threads: '1', fused_kernels: 'on' });
  });

  // A backend starts once per process, so the threaded binary runs in a child process.
  it('wasm_threads: 2 runs the threaded binary on 2 worker threads, and a matmul is right', () => {
    // a (2x3) = [[1,2,3],[4,5,6]], b (3x2) = [[1,0],[0,1],[1,1]]: a b = [[1+3, 2+3], [4+6, 5+6]] = [[4,5],[10,11]].
    const child = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'threaded-matmul.ts')], { encoding: 'utf8', timeout: 120_000 });
    expect(child.status, child.stderr.slice(-2000)).toBe(0);
    const { record, product, fused, normed } = JSON.parse(child.stdout.trim().split('\n').pop() as string);
    expect(record).toMatchObject({ backend: 'wasm', threads: '2', fused_kernels: expect.stringMatching(/^on \(threaded wasm/) });
    expect(product).toEqual([4, 5, 10, 11]);
    // The fused kernels run on the threaded binary's shared memory: RMSNorm of [3, 4] with weight
    // [1, 2]: mean square 12.5, so [3, 4] / sqrt(12.5) * [1, 2] = [0.848528, 2.262742].
    expect(fused).toBe(true);
    expect(normed[0]).toBeCloseTo(0.848528, 5);
    expect(normed[1]).toBeCloseTo(2.262742, 5);
  });

  // tfjs-node cannot be installed on these machines (packages/engine/README.md), so these paths are the real ones here.
  it.skipIf(hasTfjsNode)(
    'asking for tensorflow says how to install it',
    async () => {
      await expect(selectBackend('tensorflow')).rejects.toThrow(/npm install @tensorflow\/tfjs-node\b.*libtensorflow.*engine\.backend: wasm/s);
    },
  );
  it.skipIf(hasTfjsNode || hasTfjsNodeGpu)('auto falls back to wasm without a hardware GPU and when neither tfjs-node package loads, and says why', async () => {
    const debug: string[] = [];
    const log = { info: () => {}, warn: () => {}, debug: (m: string) => debug.push(m) };
    expect(await selectBackend('auto', log)).toBe('wasm');
    expect(debug).toEqual([
      expect.stringMatching(/^engine: engine\.backend webgpu: no (GPU device|hardware adapter)/),
      expect.stringMatching(/^engine: engine\.backend tensorflow-gpu: @tensorflow\/tfjs-node-gpu is not installed/),
      expect.stringMatching(/^engine: engine\.backend tensorflow: /),
    ]);
  });
  it.skipIf(hasTfjsNodeGpu)(
    'asking for tensorflow-gpu names CUDA 11.2 and cuDNN 8',
    async () => {
      await expect(selectBackend('tensorflow-gpu')).rejects.toThrow(/npm install @tensorflow\/tfjs-node-gpu.*CUDA 11\.2 and cuDNN 8/s);
    },
  );
});

describe('wasm kernels supplied or replaced by the engine', () => {
  // x[i][j][k] = 100 i + 10 j + k, so every element names its own position.
  const nested = () => [0, 1].map((i) => [0, 1, 2].map((j) => [0, 1, 2, 3].map((k) => 100 * i + 10 * j + k)));

  it('split, unstack and slice return the elements at their positions on every axis', async () => {
    await initEngine({ backend: 'wasm' });
    const x = tf.tensor3d(nested());
    const [a, b] = tf.split(x, [1, 3], 2);
    expect(a!.arraySync()).toEqual(nested().map((p) => p.map((r) => r.slice(0, 1))));
    expect(b!.arraySync()).toEqual(nested().map((p) => p.map((r) => r.slice(1))));
    const [c, d] = tf.split(x, [2, 1], 1);
    expect(c!.arraySync()).toEqual(nested().map((p) => p.slice(0, 2)));
    expect(d!.arraySync()).toEqual(nested().map((p) => p.slice(2)));
    expect(tf.unstack(x).map((t) => t.arraySync())).toEqual(nested());
    expect(tf.unstack(x, 1).map((t) => t.arraySync())).toEqual([0, 1, 2].map((j) => nested().map((p) => p[j])));
    expect(tf.slice(x, [1, 1, 0], [1, 2, 4]).arraySync()).toEqual([nested()[1]!.slice(1, 3)]); // contiguous
    expect(tf.slice(x, [0, 1, 1], [2, 1, 2]).arraySync()).toEqual(nested().map((p) => [p[1]!.slice(1, 3)])); // strided
    const picks = tf.tensor2d([[2, 0], [2, 1]], [2, 2], 'int32');
    expect(tf.gather(x, picks, 1).arraySync()).toEqual(nested().map((p) => [[p[2], p[0]], [p[2], p[1]]]));
    expect(tf.gather(x, tf.tensor1d([3, 3, 0], 'int32'), 2).arraySync()).toEqual(nested().map((p) => p.map((r) => [r[3], r[3], r[0]])));
    expect(() => tf.gather(x, tf.tensor1d([2], 'int32'), 0)).toThrow(/index value 2 is not in \[0, 1\]/);
  });

  it('the gradient of an embedding lookup sums the rows of repeated ids (UnsortedSegmentSum)', async () => {
    await initEngine({ backend: 'wasm' });
    const table = tf.variable(tf.zeros([3, 2]));
    const { grads } = tf.variableGrads(
      () => tf.sum(tf.mul(tf.gather(table, tf.tensor1d([0, 2, 2], 'int32')), tf.tensor2d([[1, 1], [1, 2], [3, 1]]))) as tf.Scalar,
      [table],
    );
    // Row 0 gets [1, 1]; row 1 is unused; row 2 gets [1, 2] + [3, 1] = [4, 3].
    expect(grads[table.name]!.arraySync()).toEqual([[1, 1], [0, 0], [4, 3]]);
  });
});
