/** What every command does first: load the config, find the store, plan; and how output is written. */
import * as path from 'node:path';
import { builtinStages } from '../../stages/registry.ts';
import { loadConfig, type LoadedConfig } from '../config/load.ts';
import { DiagnosticsError, formatDiagnostics, type Diagnostic } from '../diagnostics.ts';
import type { Selection } from '../graph.ts';
import { planPipeline, type Plan } from '../plan.ts';
import { ArtifactStore } from '../store/store.ts';

/** 130 = 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C. */
export const EXIT = { ok: 0, failed: 1, usage: 2, cancelled: 130 } as const;

export interface Io {
  out(text: string): void;
  err(text: string): void;
  cwd: string;
}

export const processIo: Io = {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
  get cwd() {
    return process.cwd();
  },
};

export interface ConfigOptions {
  store?: string;
  set?: string[];
}

export async function loadOrThrow(configPath: string, options: ConfigOptions, io: Io): Promise<LoadedConfig> {
  const result = await loadConfig(configPath, { overrides: options.set ?? [], registry: builtinStages, cwd: io.cwd });
  if (!result.ok) throw new DiagnosticsError(result.diagnostics);
  return result.loaded;
}

/** `--store` is relative to where the command runs; `store:` in the YAML to the YAML's folder. */
export function storeFor(loaded: LoadedConfig, options: ConfigOptions, io: Io): ArtifactStore {
  const root = options.store ? path.resolve(io.cwd, options.store) : path.resolve(loaded.dir, loaded.config.store);
  return new ArtifactStore(root);
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

export function printDiagnostics(diagnostics: readonly Diagnostic[], io: Io): number {
  io.err(formatDiagnostics(diagnostics));
  return EXIT.usage;
}

export function splitList(value: string | undefined): string[] | undefined {
  return value === undefined ? undefined : value.split(',').map((s) => s.trim()).filter(Boolean);
}
