/**
 * The engine against the PyTorch reference on webgpu (see parity-cases.ts). Without a GPU, Dawn
 * runs on Mesa's llvmpipe through OpenGL ES (apt mesa-vulkan-drivers libegl-mesa0 libgles2, which
 * .ci/run installs); where no adapter can be had the whole file skips and says why.
 */
import { describe, it } from 'vitest';
import { initEngine } from '../../stages/lib/engine/index.ts';
import { describeParity } from './parity-cases.ts';

const unavailable = await initEngine({ backend: 'webgpu' }).then(
  () => undefined,
  (error: Error) => error.message,
);

if (unavailable) describe.skip(`webgpu parity (${unavailable})`, () => it('needs a webgpu adapter', () => {}));
else describeParity('webgpu');
