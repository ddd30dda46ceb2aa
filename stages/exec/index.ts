/**
 * `uses: exec`: runs a command as a stage, so a stage can be a Python trainer or any tool.
 * The command sees its inputs and output folder as environment variables, its output is streamed
 * into the stage log, a non-zero exit fails the stage, and what it wrote to $PIPELINE_OUT is
 * published as the artifact (symbolic links replaced by copies: executor/payload.ts).
 *
 * Its environment: the runner's own (all of it, API keys included), or only the variables named in
 * `inherit_env`; then PIPELINE_OUT, PIPELINE_WORK, PIPELINE_SEED, PIPELINE_STAGE,
 * PIPELINE_PIPELINE, PIPELINE_INPUTS (JSON: stage -> folder) and PIPELINE_INPUT_<NAME> per input;
 * then `env:`. When the command exits, whatever it left running in its process group is stopped
 * before its output is published.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineStage, type Logger } from '../../pipeline/api.ts';

const params = z.strictObject({
  command: z
    .union([z.string().min(1), z.array(z.string()).min(1)])
    .describe('A string runs through /bin/sh -c; a list runs the program directly with those arguments.'),
  env: z
    .record(z.string(), z.union([z.string(), z.number(), z.boolean()]))
    .default({})
    .describe('Extra environment variables (part of the fingerprint); numbers and booleans are passed as text.'),
  cwd: z.string().default('.').describe("Working folder, relative to the config file's folder."),
  produces: z
    .enum(['files', 'checkpoint', 'dataset', 'sft-set', 'samples', 'prompts', 'kg', 'eval'])
    .default('files')
    .describe('Artifact kind of what the command writes: checkpoint for a trainer writing an HF model folder, which sample, dpo, grpo and eval then read'),
  files: z
    .array(z.string())
    .default([])
    .describe("Files the command reads (scripts, data), relative to the config file's folder; editing one reruns the stage."),
  inherit_env: z
    .array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name'))
    .optional()
    .describe("Only these variables of the runner's environment reach the command (e.g. [PATH, HOME]); unset, all of them do, secrets included"),
});

/** `PIPELINE_INPUT_<NAME>`: stage names may hold `-`, which a variable name cannot. */
export function inputVariable(stage: string): string {
  return `PIPELINE_INPUT_${stage.toUpperCase().replace(/[^A-Z0-9_]/g, '_')}`;
}

/** The needs whose PIPELINE_INPUT_* variable another need of the same stage also maps to. */
function inputVariableClashes(needs: readonly string[]): string[] {
  const byVariable = new Map<string, string[]>();
  for (const need of needs) byVariable.set(inputVariable(need), [...(byVariable.get(inputVariable(need)) ?? []), need]);
  return [...byVariable].filter(([, stages]) => stages.length > 1).map(([variable, stages]) => `needs ${stages.join(' and ')} both become ${variable}: rename one of those stages`);
}

/** How long a stopped command gets between SIGTERM and SIGKILL to write its last words. */
const STOP_GRACE_MS = 5000;

/** How long the output of a finished command is read once its group is gone. */
const PIPE_DRAIN_MS = 1000;

interface ProcessGroup {
  /** The command's own exit (its children may live on). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** After `stop`: resolves once the group is gone (it got SIGKILL if the grace period ran out). */
  stopped: Promise<void>;
  stop(log: Logger): void;
  kill(signal: NodeJS.Signals): void;
  /** Some process of the group is still running. */
  alive(): boolean;
}

/**
 * The groups of the commands running now. The runner may exit at once (a second Ctrl-C) without
 * waiting for its stages: one exit hook then takes every group along.
 */
const liveGroups = new Set<ProcessGroup>();
process.on('exit', () => {
  for (const group of liveGroups) group.kill('SIGKILL');
});

/**
 * The process group led by `child` (spawned with `detached: true`). A stop sends SIGTERM to the
 * whole group, and SIGKILL to whatever of it is left when the grace period is over: a background
 * grandchild must not outlive a cancelled stage and write into a folder a later attempt publishes.
 */
function processGroup(child: ChildProcess): ProcessGroup {
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  const kill = (signal: NodeJS.Signals) => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      // ESRCH: the whole group is gone already.
    }
  };
  const groupAlive = () => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 0);
      return child.pid !== undefined;
    } catch {
      return false;
    }
  };
  let stopped: Promise<void> = Promise.resolve();
  return {
    exited,
    get stopped() {
      return stopped;
    },
    kill,
    alive: groupAlive,
    stop(log) {
      log.info(`stopping: SIGTERM to process group ${child.pid}`);
      kill('SIGTERM');
      stopped = (async () => {
        const deadline = Date.now() + STOP_GRACE_MS;
        while (groupAlive() && Date.now() < deadline) await sleep(50);
        if (groupAlive()) {
          log.info(`process group ${child.pid} still running ${STOP_GRACE_MS / 1000} s after SIGTERM: SIGKILL`);
          kill('SIGKILL');
        }
      })();
    },
  };
}

export const execStage = defineStage({
  name: 'exec',
  version: '1',
  description: 'Run a command; what it writes into $PIPELINE_OUT is the artifact.',
  params,
  produces: 'files',
  producesFor: (p) => p.produces,
  resources: 'light',
  userFiles: (p) => p.files,
  async check(_params, { needs }) {
    return inputVariableClashes(needs).map((message) => ({ path: [], message }));
  },
  async run(ctx) {
    const { command } = ctx.params;
    const [program, ...args] = typeof command === 'string' ? ['/bin/sh', '-c', command] : command;
    const allowed = ctx.params.inherit_env;
    const inherited = allowed ? Object.fromEntries(allowed.flatMap((name) => (process.env[name] === undefined ? [] : [[name, process.env[name]]]))) : process.env;
    const env: Record<string, string | undefined> = {
      ...inherited,
      PIPELINE_OUT: ctx.outDir,
      PIPELINE_WORK: ctx.workDir,
      PIPELINE_SEED: String(ctx.seed),
      PIPELINE_STAGE: ctx.stage,
      PIPELINE_PIPELINE: ctx.pipeline,
      PIPELINE_INPUTS: JSON.stringify(Object.fromEntries(ctx.inputs.all.map((input) => [input.stage, input.dir]))),
      ...Object.fromEntries(ctx.inputs.all.map((input) => [inputVariable(input.stage), input.dir])),
      ...Object.fromEntries(Object.entries(ctx.params.env).map(([key, value]) => [key, String(value)])),
    };
    ctx.log.info(`$ ${typeof command === 'string' ? command : command.join(' ')}`);
    const child = spawn(program as string, args, {
      cwd: path.resolve(ctx.configDir, ctx.params.cwd),
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, so a stop reaches everything the command started, not only `sh`.
      detached: true,
    });
    const streamed = [child.stdout, child.stderr].map(
      (stream) =>
        new Promise<void>((resolve) => {
          const lines = createInterface({ input: stream });
          lines.on('line', (line) => ctx.log.info(line));
          lines.on('close', resolve);
        }),
    );
    const group = processGroup(child);
    const stop = () => group.stop(ctx.log);
    ctx.signal.addEventListener('abort', stop, { once: true });
    if (ctx.signal.aborted) stop();
    liveGroups.add(group);
    try {
      const exit = await group.exited;
      if (ctx.signal.aborted) {
        await group.stopped;
        // A process that left the group (setsid) may still hold the pipes: stop reading them, or
        // their open handles would keep this process alive as long as it lives.
        child.stdout.destroy();
        child.stderr.destroy();
        ctx.signal.throwIfAborted();
      }
      // The command is over: what it left running in its group (a `cmd &`) must not write into
      // the output once it is published, so it is stopped now, succeeded or not.
      if (group.alive()) {
        ctx.log.info(`the command exited; stopping what it left running in process group ${child.pid}`);
        group.stop(ctx.log);
        await group.stopped;
      }
      // Its last lines are still in the pipes; a process that left the group (setsid) may hold them
      // open for ever, so read for a moment and then let go.
      await Promise.race([Promise.all(streamed), sleep(PIPE_DRAIN_MS)]);
      child.stdout.destroy();
      child.stderr.destroy();
      if (exit.code !== 0) {
        throw new Error(exit.signal ? `command killed by ${exit.signal}` : `command exited with code ${exit.code}`);
      }
    } finally {
      ctx.signal.removeEventListener('abort', stop);
      liveGroups.delete(group);
    }
  },
});
