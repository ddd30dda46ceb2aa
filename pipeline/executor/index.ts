/**
 * Executors by name, loaded on demand. The Slurm executor (pipeline/slurm/) registers itself here
 * with one line: `slurm: () => import('../slurm/executor.ts').then((m) => m.slurmExecutor),`.
 */
import type { ExecutorName } from '../config/schema.ts';
import type { Executor } from './types.ts';

export const executors: Partial<Record<ExecutorName, () => Promise<Executor>>> = {
  local: () => import('./local.ts').then((m) => m.localExecutor),
  slurm: () => import('../slurm/executor.ts').then((m) => m.slurmExecutor),
};
