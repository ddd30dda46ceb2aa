// Entry of the LLM tier's worker thread. Like data-parallel-worker.mjs: a worker inherits neither
// tsx's programmatic hooks nor vitest's transform, so it registers tsx, then loads the TypeScript.
import { register } from 'tsx/esm/api';

register();
await import('./llm-worker.ts');
