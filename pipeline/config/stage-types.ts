/** Resolves `uses:` to a stage type: a registered name, or a path to a user's TypeScript module. */
import * as path from 'node:path';
import type { StageType } from '../stage-api.ts';
import { exists } from '../store/fs-util.ts';
import { describeLoadError, importUserModule } from '../user-module.ts';

export function isUserStagePath(uses: string): boolean {
  return uses.startsWith('./') || uses.startsWith('../') || path.isAbsolute(uses);
}

export type Resolved = { type: StageType; userFile?: string } | { error: string };

/**
 * A user module exports its stage as `default` (made with `defineStage`) or as `stage`. Its bytes
 * are fingerprinted by the planner; imports it makes are not (documented in the README's stage
 * section): keep a user stage in one file, or bump its `version` when a helper it imports changes.
 */
export async function loadUserStage(uses: string, configDir: string): Promise<Resolved> {
  const file = path.resolve(configDir, uses);
  if (!(await exists(file))) return { error: `stage module not found: ${uses} (looked for ${file})` };
  let module: Record<string, unknown>;
  try {
    module = await importUserModule(file);
  } catch (error) {
    return { error: `cannot load stage module ${uses}: ${describeLoadError(error)}` };
  }
  const candidate = (module.default ?? module.stage) as Partial<StageType> | undefined;
  const problems: string[] = [];
  if (!candidate || typeof candidate !== 'object') problems.push('a default export made with defineStage(...)');
  else {
    if (typeof candidate.name !== 'string') problems.push('name (string)');
    if (typeof candidate.version !== 'string') problems.push('version (string)');
    // Duck-typed: a module may carry its own copy of zod, whose classes differ from ours.
    if (typeof (candidate.params as { safeParse?: unknown } | undefined)?.safeParse !== 'function') problems.push('params (a zod schema)');
    if (typeof candidate.run !== 'function') problems.push('run (a function)');
    if (candidate.resources !== 'light' && candidate.resources !== 'train') problems.push('resources ("light" or "train")');
  }
  if (problems.length > 0) return { error: `stage module ${uses} does not export a stage: missing ${problems.join(', ')}` };
  return { type: { produces: 'files', description: '', ...candidate } as StageType, userFile: uses };
}
