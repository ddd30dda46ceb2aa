/**
 * How a command that belongs to stages (`score`, `serve`, `export`: they use what stages built) joins
 * the command line without the orchestrator knowing it. The composition root (bin/pipeline.js) hands
 * `main` a list of `StageCommand`s; each adds itself to the program with the same option helpers,
 * exit codes and error reporting as the orchestrator's own commands. All of it comes in the
 * `CommandKit`, so a commands module needs no value import at start-up (`--version` stays fast).
 */
import { InvalidArgumentError, type Command } from 'commander';
import { DiagnosticsError } from '../diagnostics.ts';
import type { BuiltArtifacts } from './artifacts.ts';
import type { ConfigOptions } from './common.ts';
import { EXIT, type CommandIo } from './io.ts';

/** What a stage-owned command is given to build itself with. */
export interface CommandKit {
  io: CommandIo;
  /** The process's exit code once the command's action has resolved. */
  setExit(code: number): void;
  /** Adds `--store` and `--set`, as every command that reads a config has. */
  withConfigOptions(command: Command): Command;
  /** Wraps an action so its failures print `error: ...` and exit 1 (config errors keep their diagnostics). */
  reportingErrors<A extends unknown[]>(action: (...args: A) => Promise<void>): (...args: A) => Promise<void>;
  /** Each stage's current artifact of the config, as the `Inputs` a stage would receive. */
  builtArtifacts(configPath: string, options: ConfigOptions): Promise<BuiltArtifacts>;
  /** Option value parsers, as the orchestrator's own commands use them. */
  parse: { positiveInt: typeof positiveInt; stageList: typeof stageList; unitInterval: typeof unitInterval };
  exit: typeof EXIT;
}

/** Adds one command to the program. */
export type StageCommand = (program: Command, kit: CommandKit) => void;

export const collect = (value: string, previous: string[] = []) => [...previous, value];

export function withConfigOptions(command: Command): Command {
  return command
    .option('--store <dir>', "artifact store (default: the config's `store:`, relative to the config file)")
    .option('--set <key=value>', 'override a config value, e.g. stages.sft.with.learning_rate=3e-4 (repeatable)', collect);
}

export function reportingErrors<A extends unknown[]>(io: CommandIo, setExit: (code: number) => void, action: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args) => {
    try {
      await action(...args);
    } catch (error) {
      if (error instanceof DiagnosticsError) throw error;
      io.err(`error: ${(error as Error).message}`);
      setExit(EXIT.failed);
    }
  };
}

export function splitList(value: string | undefined): string[] | undefined {
  return value === undefined ? undefined : value.split(',').map((s) => s.trim()).filter(Boolean);
}

/** Option value parsers: each rejects bad input with a message commander prints beside the option. */
export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number >= 1');
  return n;
}

export function stageList(value: string): string[] {
  const stages = value.split(',').map((s) => s.trim());
  if (stages.some((s) => s === '')) throw new InvalidArgumentError(`expected stage names separated by commas, got "${value}"`);
  return stages;
}

export function unitInterval(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !(n >= 0 && n <= 1)) throw new InvalidArgumentError('expected a number from 0 to 1');
  return n;
}
