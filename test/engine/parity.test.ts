/** The engine against the PyTorch reference on wasm (see parity-cases.ts). */
import { beforeAll } from 'vitest';
import { initEngine } from '../../packages/engine/src/index.ts';
import { describeParity } from './parity-cases.ts';

beforeAll(async () => {
  await initEngine({ backend: 'wasm' });
});

describeParity('wasm');
