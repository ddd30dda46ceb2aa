/** How commands write and where they run: kept apart from common.ts so pipeline/api.ts can re-export it without loading the config loader. */
import type { StageType } from '../stage-api.ts';

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

/**
 * The stage types a config's `uses:` may name. The composition root (bin/pipeline.js) passes the
 * built-in ones as a loader, so commands that load no config (`--help`, `--version`) never import them.
 */
export type StageSource = readonly StageType[] | (() => Promise<readonly StageType[]>);

/** What a command that reads a config works with: the output, where it runs, and the stage types. */
export interface CommandIo extends Io {
  stages: StageSource;
}

export async function stageTypes(source: StageSource): Promise<readonly StageType[]> {
  return typeof source === 'function' ? await source() : source;
}

