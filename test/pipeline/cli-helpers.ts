// Runs the real CLI (`node bin/pipeline.js`) the way a user's shell does, in a temp folder.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll } from 'vitest';
import { main } from '../../pipeline/cli.ts';
import type { StageType } from '../../pipeline/stage-api.ts';
import { stageCommands } from '../../stages/commands.ts';
import { builtinStages } from '../../stages/registry.ts';

export const BIN = path.resolve(import.meta.dirname, '../../bin/pipeline.js');
export const FIXTURES = path.resolve(import.meta.dirname, 'fixtures');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function tempDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * A `workspace(prefix)` that makes a temp folder per call, all removed after the calling file's
 * tests. Call it at module level (it registers the afterAll hook).
 */
export function workspaces(): (prefix: string) => string {
  const cleanups: (() => void)[] = [];
  afterAll(() => cleanups.forEach((remove) => remove()));
  return (prefix) => {
    const { dir, remove } = tempDir(prefix);
    cleanups.push(remove);
    return dir;
  };
}

/**
 * The CLI run in-process through `main` (the same code as bin/pipeline.js minus start-up), in `dir`,
 * with the built-in stage types and commands unless `stages` names others (fixture stage types).
 */
export function inProcess(dir: string, stages: readonly StageType[] = builtinStages): (...args: string[]) => Promise<{ code: number; out: string; err: string }> {
  return async (...args) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(['node', 'pipeline', ...args], { out: (t) => out.push(t), err: (t) => err.push(t), cwd: dir }, { stages, commands: stageCommands });
    return { code, out: out.join('\n'), err: err.join('\n') };
  };
}

function environment(dir: string): NodeJS.ProcessEnv {
  return { ...process.env, CI: 'true', COUNT_FILE: path.join(dir, 'count.txt') };
}

export function cli(dir: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: dir, env: { ...environment(dir), ...env } }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

/** A CLI run in the background, for killing it or racing another one. */
export function cliBackground(dir: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: dir, env: { ...environment(dir), ...extraEnv } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const done = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 137 : 1), stdout, stderr })));
  return { child, done };
}

/** Lines appended by the fixture stages to count.txt, i.e. which stages ran. */
export function runsOf(dir: string): string[] {
  try {
    return readFileSync(path.join(dir, 'count.txt'), 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

export async function waitFor(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
