/** Resolves `uses:` to a stage type: a registered name, or a path to a user's TypeScript module. */
import * as path from 'node:path';
import { z } from 'zod';
import type { StageType } from '../stage-api.ts';
import { exists } from '../store/fs-util.ts';
import { checkUserModule, describeLoadError, importUserModule } from '../user-module.ts';

export function isUserStagePath(uses: string): boolean {
  return uses.startsWith('./') || uses.startsWith('../') || path.isAbsolute(uses);
}

export type Resolved = { type: StageType; userFile?: string } | { error: string };

/**
 * A user stage as read-only commands see it, without running its file (README, "Reward files and
 * user stages are trusted code"): the file exists, compiles (esbuild transpiles it; nothing is
 * evaluated) and exports `default` or `stage`. What only its code can say (params schema, version,
 * declared files, kind, checks) is unknown here: `with:` is taken as written, planning reads the
 * version and files from a manifest the code wrote (plan-user-stage.ts), and the checks run when
 * `run` imports the module. This stand-in type never runs: only `run` plans with imported stages.
 */
export async function describeUserStage(uses: string, configDir: string): Promise<Resolved> {
  const file = path.resolve(configDir, uses);
  if (!(await exists(file))) return { error: `stage module not found: ${uses} (looked for ${file})` };
  const checked = await checkUserModule(file);
  if ('error' in checked) return { error: `stage module ${uses} ${checked.error}` };
  if (!checked.exports.includes('default') && !checked.exports.includes('stage')) {
    return { error: `stage module ${uses} does not export a stage: missing a default export made with defineStage(...)` };
  }
  const notImported: StageType = {
    name: uses,
    version: '',
    description: `user stage ${uses} (not imported: only \`pipeline run\` runs its file)`,
    params: z.unknown(),
    produces: 'files',
    resources: 'light',
    run: () => Promise.reject(new Error(`Internal error: user stage ${uses} was planned without importing it; only \`pipeline run\` may run it`)),
  };
  return { type: notImported, userFile: uses };
}

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
