import { describe, expect, it } from 'vitest';
import { selectBackend } from '../../stages/lib/engine/backend.ts';
import { initEngine } from '../../stages/lib/engine/index.ts';

const installed = async (pkg: string) => import(pkg).then(() => true, () => false);
const hasTfjsNode = await installed('@tensorflow/tfjs-node');
const hasTfjsNodeGpu = await installed('@tensorflow/tfjs-node-gpu');

describe('initEngine', () => {
  it('starts wasm once and returns the same record to later callers', async () => {
    const first = await initEngine({ backend: 'wasm' });
    const again = await initEngine({ backend: 'auto' });
    expect(again).toBe(first);
    expect(first).toMatchObject({ backend: 'wasm', tfjs: '4.22.0', requested: 'wasm', threads: 'false' });
  });

  // tfjs-node cannot be installed on these machines (FACTS.md), so these paths are the real ones here.
  it.skipIf(hasTfjsNode)(
    'asking for tensorflow says how to install it',
    async () => {
      await expect(selectBackend('tensorflow')).rejects.toThrow(/npm install @tensorflow\/tfjs-node\b.*libtensorflow.*engine\.backend: wasm/s);
    },
  );
  it.skipIf(hasTfjsNodeGpu)(
    'asking for tensorflow-gpu names CUDA 11.2 and cuDNN 8',
    async () => {
      await expect(selectBackend('tensorflow-gpu')).rejects.toThrow(/npm install @tensorflow\/tfjs-node-gpu.*CUDA 11\.2 and cuDNN 8/s);
    },
  );
});
