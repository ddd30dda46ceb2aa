// Entry of the reward worker thread (reward-files.ts). Like data-parallel-worker.mjs: a worker
// inherits neither tsx's programmatic hooks nor vitest's transform, so it registers tsx itself.
// Both hooks, as bin/pipeline.js does: a reward file outside an ES-module package is CommonJS to Node.
import { register as registerCommonJs } from 'tsx/cjs/api';
import { register } from 'tsx/esm/api';

register();
registerCommonJs();
await import('./reward-worker.ts');
