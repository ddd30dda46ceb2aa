/** What every command does first: load the config, find the store, plan; and how output is written. */
import { statSync } from 'node:fs';
import * as path from 'node:path';
import { loadConfig, type LoadedConfig } from '../config/load.ts';
import { locate } from '../config/locate.ts';
import { DiagnosticsError, formatDiagnostics } from '../diagnostics.ts';
import type { Selection } from '../graph.ts';
import { planPipeline, type Plan } from '../plan.ts';
import { ArtifactStore } from '../store/store.ts';
import { stageTypes, type CommandIo, type Io } from './io.ts';

export { EXIT, processIo, stageTypes, type CommandIo, type Io, type StageSource } from './io.ts';

export interface ConfigOptions {
  store?: string;
  set?: string[];
}

/**
 * `importUserStages`: run `uses: ./x.ts` files to get their stage (only `run` and `run-stage`, which
 * execute stages anyway); every other command checks them without running them (load.ts).
 */
export async function loadOrThrow(configPath: string, options: ConfigOptions, io: CommandIo, importUserStages = false): Promise<LoadedConfig> {
  const result = await loadConfig(configPath, { overrides: options.set ?? [], registry: await stageTypes(io.stages), cwd: io.cwd, importUserStages });
  if (!result.ok) throw new DiagnosticsError(result.diagnostics);
  if (result.warnings.length > 0) io.err(formatDiagnostics(result.warnings));
  return result.loaded;
}

/** `--store` is relative to where the command runs; `store:` in the YAML to the YAML's folder. */
export function storeFor(loaded: LoadedConfig, options: ConfigOptions, io: Io): ArtifactStore {
  const root = options.store ? path.resolve(io.cwd, options.store) : path.resolve(loaded.dir, loaded.config.store);
  const blocker = fileInTheWay(root);
  if (blocker !== undefined) {
    const what = blocker === root ? `${root} is a file` : `${blocker} is a file, so ${root} cannot be created`;
    throw new DiagnosticsError([
      {
        location: options.store ? { origin: `--store ${options.store}` } : locate(loaded.source, ['store']),
        ...(options.store ? {} : { path: ['store'] }),
        message: `${what}: the store is a folder (created when missing); name a folder`,
      },
    ]);
  }
  return new ArtifactStore(root);
}

/** The folder itself or its nearest existing ancestor, when that is not a folder (every store path fails below it). */
function fileInTheWay(folder: string): string | undefined {
  for (let at = folder; ; at = path.dirname(at)) {
    let stat;
    try {
      stat = statSync(at, { throwIfNoEntry: false });
    } catch (error) {
      // ENOTDIR: a file above it; found on the way up.
      if ((error as NodeJS.ErrnoException).code !== 'ENOTDIR') throw error;
    }
    if (stat) return stat.isDirectory() ? undefined : at;
    if (path.dirname(at) === at) return undefined;
  }
}

export async function planOrThrow(
  loaded: LoadedConfig,
  store: ArtifactStore,
  options: { selection?: Selection; force?: string[] },
): Promise<Plan> {
  const result = await planPipeline(loaded, store, options);
  if (!result.ok) throw new DiagnosticsError(result.diagnostics);
  return result.plan;
}
