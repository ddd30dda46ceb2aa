// Entry of a data-parallel worker thread. A worker inherits neither tsx's hooks when the parent
// registered them programmatically (bin/pipeline.js) nor vitest's transform, so it registers tsx
// itself, then loads the TypeScript worker. Registering again where tsx is already active (run
// under `tsx`, whose --import the worker inherits) is harmless.
import { register } from 'tsx/esm/api';

register();
await import('./data-parallel-worker.ts');
