// The orchestrator knows no stage: bin/pipeline.js (the composition root) hands `main` the stage
// types and the stage-owned commands, so the same orchestrator runs with fixture ones, and
// nothing under pipeline/ imports stages/.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { StageCommand } from '../../pipeline/api.ts';
import { main } from '../../pipeline/cli.ts';
import { findCycles } from '../../pipeline/graph.ts';
import { importGraph, importsOf, ROOT, sourceFiles } from '../../scripts/import-graph.ts';
import countStage from './fixtures/count-stage.ts';
import { BIN, cli, FIXTURES, workspaces } from './cli-helpers.ts';

const workspace = workspaces();

/** A stage-owned command as a fixture: prints which stages of the config have an artifact. */
const builtCommand: StageCommand = (program, { io, setExit, withConfigOptions, builtArtifacts }) => {
  withConfigOptions(program.command('built').argument('<config>')).action(async (config: string, flags) => {
    const artifacts = await builtArtifacts(config, flags);
    io.out(`${artifacts.pipeline}: ${artifacts.all.map((a) => `${a.stage}=${a.kind}`).join(' ')} of ${artifacts.stages.join(',')}`);
    setExit(0);
  });
};

function orchestrator(dir: string) {
  return async (...args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(['node', 'pipeline', ...args], { out: (t) => out.push(t), err: (t) => err.push(t), cwd: dir }, { stages: async () => [countStage], commands: [builtCommand], version: '9.8.7' });
    return { code, out: out.join('\n'), err: err.join('\n') };
  };
}

describe('main with the stage types and commands it is given', () => {
  it('lists, validates and runs only the given stage types, and adds the given commands', async () => {
    const dir = workspace('composition-');
    writeFileSync(path.join(dir, 'p.yaml'), 'name: fx\nstages:\n  a: { uses: count, with: { value: x } }\n  b: { uses: count, needs: [a] }\n');
    const pipeline = orchestrator(dir);
    const stages = await pipeline('stages');
    expect(stages).toEqual({ code: 0, out: 'count (v1, light, produces files): counts its runs\n  value (string, default "v"): text appended to the output', err: '' });
    expect((await pipeline('run', 'p.yaml', '--until', 'a')).code).toBe(0);
    expect(await pipeline('built', 'p.yaml')).toEqual({ code: 0, out: 'fx: a=files of a,b', err: '' });
    expect((await pipeline('--version')).out).toBe('9.8.7');
  });

  it('knows no built-in stage type and no built-in stage command', async () => {
    const dir = workspace('composition-');
    writeFileSync(path.join(dir, 'q.yaml'), 'name: fx\nstages:\n  train: { uses: sft }\n');
    const pipeline = orchestrator(dir);
    const validate = await pipeline('validate', 'q.yaml');
    expect(validate.code).toBe(2);
    expect(validate.err).toContain('unknown stage type "sft"');
    const score = await pipeline('score', 'q.yaml');
    expect(score.code).toBe(2);
    expect(score.err).toContain("unknown command 'score'");
  });
});

describe('the composition root', () => {
  it('finishes quietly when the reader of its output has gone (`pipeline stages | head`)', async () => {
    // The read end is closed before the command writes, so every write meets EPIPE.
    const child = spawn(process.execPath, [BIN, 'stages'], { cwd: workspace('epipe-'), stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
  });

  it('prints the package version with --version', async () => {
    const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const result = await cli(workspace('version-'), ['--version']);
    expect(result).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
  });
});

/** Whether dist/ (scripts/build-dist.ts) matches the sources, as bin/pipeline.js decides it. */
function compiledIsCurrent(): boolean {
  const file = path.join(ROOT, 'dist', 'sources.json');
  if (!existsSync(file)) return false;
  const { files } = JSON.parse(readFileSync(file, 'utf8')) as { files: Record<string, [number, number, string]> };
  return Object.entries(files).every(([source, [, , sha256]]) => {
    const at = path.join(ROOT, source);
    return existsSync(at) && createHash('sha256').update(readFileSync(at)).digest('hex') === sha256;
  });
}

// `npm ci` builds dist/; a checkout edited since (or never built) runs the sources and skips this.
describe.skipIf(!compiledIsCurrent())('the compiled dist/', () => {
  it('plans, runs a user .ts stage and lists the stage types as the sources do', async () => {
    const results = [];
    for (const fromSource of ['0', '1']) {
      const dir = workspace('dist-');
      writeFileSync(path.join(dir, 'p.yaml'), `name: d\nstages:\n  a: { uses: ${path.join(FIXTURES, 'count-stage.ts')} }\n  b: { uses: exec, needs: [a], with: { command: ['true'] } }\n`);
      const env = { PIPELINE_FROM_SOURCE: fromSource };
      const plan = await cli(dir, ['plan', 'p.yaml'], env);
      const run = await cli(dir, ['run', 'p.yaml'], env);
      const stages = await cli(dir, ['stages'], env);
      expect([plan.code, run.code, stages.code], `${plan.stderr}${run.stderr}${stages.stderr}`).toEqual([0, 0, 0]);
      results.push({ plan: plan.stdout, built: readFileSync(path.join(dir, 'count.txt'), 'utf8'), stages: stages.stdout });
    }
    expect(results[0]?.plan).toMatch(/^a: run \([0-9a-f]{8}\), never built\nb: run/);
    expect(results[0]?.built).toBe('a\n');
    expect(results[0]).toEqual(results[1]);
  });

  it('goes into the package npm pack makes, with every file it was built from and no link', () => {
    // `npm pack` leaves symbolic links out, so what dist/ reaches by relative path must be files.
    const listing = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, npm_config_loglevel: 'silent' } });
    const packed = new Set((JSON.parse(listing) as Array<{ files: Array<{ path: string }> }>)[0]?.files.map((f) => f.path));
    const { files } = JSON.parse(readFileSync(path.join(ROOT, 'dist', 'sources.json'), 'utf8')) as { files: Record<string, unknown> };
    const stamped = Object.keys(files);
    expect(stamped.filter((source) => !packed.has(source))).toEqual([]);
    expect(['dist/sources.json', 'dist/bin/pipeline.js', 'dist/pipeline/cli.js', 'dist/packages/engine/src/index.js', 'dist/data/ontology.yaml'].filter((file) => !packed.has(file))).toEqual([]);
    // Each source is packed compiled (its .js) or, in a folder the sources read, as a copy.
    expect(stamped.filter((source) => !packed.has(`dist/${source.replace(/\.ts$/, '.js')}`) && !packed.has(`dist/${source}`))).toEqual([]);
    expect([...packed].filter((file) => file.startsWith('test/') || file.startsWith('bench/'))).toEqual([]);
  });
});

describe('the import graph', () => {
  it('has no cycle between files of pipeline/, stages/ and the engine package (type-only imports count)', () => {
    expect(findCycles(importGraph(['pipeline', 'stages', 'packages']))).toEqual([]);
  });

  it('reads type-only and dynamic imports as arrows', () => {
    const graph = importGraph(['stages']);
    // grpo/index.ts imports train.ts only inside run(); eval/fragment.ts imports a type only.
    expect(graph.get('stages/grpo/index.ts')).toContain('stages/grpo/train.ts');
    expect(graph.get('stages/eval/fragment.ts')).toContain('stages/eval/eval-metrics.ts');
  });
});

describe('the orchestrator imports nothing from stages/', () => {
  it('has no import from a file under pipeline/ to one under stages/', () => {
    const stagesDir = path.join(ROOT, 'stages') + path.sep;
    const upward = sourceFiles(path.join(ROOT, 'pipeline')).flatMap((file) =>
      importsOf(file)
        .filter((target) => target.startsWith(stagesDir))
        .map((target) => `${path.relative(ROOT, file)} -> ${path.relative(ROOT, target)}`),
    );
    expect(upward).toEqual([]);
  });

  it('is reached from stages/ only through its public surface, pipeline/api.ts', () => {
    const pipelineDir = path.join(ROOT, 'pipeline') + path.sep;
    const api = path.join(ROOT, 'pipeline', 'api.ts');
    const private_ = sourceFiles(path.join(ROOT, 'stages')).flatMap((file) =>
      importsOf(file)
        .filter((target) => target.startsWith(pipelineDir) && target !== api)
        .map((target) => `${path.relative(ROOT, file)} -> ${path.relative(ROOT, target)}`),
    );
    expect(private_).toEqual([]);
  });
});
