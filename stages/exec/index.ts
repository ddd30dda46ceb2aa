/**
 * `uses: exec`: runs a command as a stage, so a stage can be a Python trainer or any tool.
 * The command sees its inputs and output folder as environment variables, its output is streamed
 * into the stage log, a non-zero exit fails the stage, and what it wrote to $PIPELINE_OUT is
 * published as the artifact.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { defineStage } from '../../pipeline/stage-api.ts';

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
});

/** `PIPELINE_INPUT_<NAME>`: stage names may hold `-`, which a variable name cannot. */
export function inputVariable(stage: string): string {
  return `PIPELINE_INPUT_${stage.toUpperCase().replace(/[^A-Z0-9_]/g, '_')}`;
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
  async run(ctx) {
    const { command } = ctx.params;
    const [program, ...args] = typeof command === 'string' ? ['/bin/sh', '-c', command] : command;
    const env: Record<string, string | undefined> = {
      ...process.env,
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
      signal: ctx.signal,
      killSignal: 'SIGTERM',
    });
    const streamed = [child.stdout, child.stderr].map(
      (stream) =>
        new Promise<void>((resolve) => {
          const lines = createInterface({ input: stream });
          lines.on('line', (line) => ctx.log.info(line));
          lines.on('close', resolve);
        }),
    );
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code, signal) => resolve({ code, signal }));
    });
    await Promise.all(streamed);
    ctx.signal.throwIfAborted();
    if (exit.code !== 0) {
      throw new Error(exit.signal ? `command killed by ${exit.signal}` : `command exited with code ${exit.code}`);
    }
  },
});
