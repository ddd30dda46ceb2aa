/**
 * Orchestrator overhead on a generated 200-stage DAG of no-op stages: how long `plan` takes, and
 * a fully cached `run`. Both go through the CLI's `main` in this process, so the figures exclude
 * Node/tsx start-up (printed separately as a single `validate` through bin/pipeline.js).
 * Targets: plan < 1 s, cached rerun < 2 s. Last line: {"plan_200_s": ..., "cached_rerun_200_s": ...}.
 *
 *   npm run bench:orchestrator
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { main } from '../pipeline/cli.ts';
import { builtinStages } from '../stages/registry.ts';
import type { Io } from '../pipeline/commands/common.ts';

const STAGES = 200;
const dir = mkdtempSync(path.join(tmpdir(), 'bench-orchestrator-'));
const lines: string[] = [];
const io: Io = { out: (text) => lines.push(text), err: (text) => lines.push(text), cwd: dir };

// Layered DAG: stage i needs up to 3 of the 10 stages before it, like a wide training DAG.
const stageModule = path.resolve(import.meta.dirname, '..', 'pipeline', 'stage-api.ts');
writeFileSync(
  path.join(dir, 'noop.ts'),
  // The temp folder has no node_modules: import zod by the URL this process resolved it to.
  `import { z } from '${import.meta.resolve('zod')}';\nimport { defineStage } from '${stageModule}';\n` +
    `export default defineStage({ name: 'noop', version: '1', description: 'does nothing', params: z.strictObject({ i: z.int() }), produces: 'files', resources: 'light', async run() {} });\n`,
);
writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
const yaml = ['name: bench', 'stages:'];
for (let i = 0; i < STAGES; i++) {
  const needs = [i - 1, i - 4, i - 10].filter((j) => j >= 0).map((j) => `s${j}`);
  yaml.push(`  s${i}: { uses: ./noop.ts, needs: [${needs.join(', ')}], with: { i: ${i} } }`);
}
writeFileSync(path.join(dir, 'p.yaml'), `${yaml.join('\n')}\n`);

async function timed(args: string[]): Promise<number> {
  const start = performance.now();
  const code = await main(['node', 'pipeline', ...args], io, { stages: builtinStages, commands: [] });
  if (code !== 0) throw new Error(`pipeline ${args.join(' ')} exited ${code}:\n${lines.slice(-20).join('\n')}`);
  return (performance.now() - start) / 1000;
}

try {
  const firstRun = await timed(['run', 'p.yaml', '--concurrency', '4']);
  // The median of 3 runs of each: one machine shared by several people, so single figures jump.
  const median = async (args: string[]) => {
    const times = [await timed(args), await timed(args), await timed(args)].sort((a, b) => a - b);
    return times[1] as number;
  };
  const plan = await median(['plan', 'p.yaml']);
  lines.length = 0;
  const cached = await median(['run', 'p.yaml']);
  const cachedLines = lines.filter((line) => / cached \(/.test(line)).length;
  if (cachedLines < 3 * STAGES) throw new Error(`expected ${STAGES} cached stages in each of the cached runs, saw ${cachedLines}`);
  const bin = path.resolve(import.meta.dirname, '..', 'bin', 'pipeline.js');
  const startAt = performance.now();
  execFileSync(process.execPath, [bin, 'validate', 'p.yaml'], { cwd: dir, env: { ...process.env, CI: 'true' } });
  const cliValidate = (performance.now() - startAt) / 1000;
  console.log(`first run (builds ${STAGES} no-op stages): ${firstRun.toFixed(3)} s`);
  console.log(`plan: ${plan.toFixed(3)} s (target < 1 s)`);
  console.log(`cached rerun: ${cached.toFixed(3)} s (target < 2 s)`);
  console.log(`validate through bin/pipeline.js, including Node and tsx start-up: ${cliValidate.toFixed(3)} s`);
  console.log(JSON.stringify({ plan_200_s: Number(plan.toFixed(3)), cached_rerun_200_s: Number(cached.toFixed(3)) }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
