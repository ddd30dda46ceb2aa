// The CLI's commands run in-process through `main` (same code as bin/pipeline.js minus start-up),
// for the behaviours that need many calls: selection, --force, ls/show/gc, stages, exit codes.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { stepCheckpoints } from '../../pipeline/executor/checkpoints.ts';
import { FIXTURES, inProcess, runsOf, tempDir } from './cli-helpers.ts';

const { dir, remove } = tempDir('pipeline-commands-');
afterAll(remove);
const COUNT = path.join(FIXTURES, 'count-stage.ts');

const pipeline = inProcess(dir);

beforeAll(() => {
  process.env.COUNT_FILE = path.join(dir, 'count.txt');
  writeFileSync(
    path.join(dir, 'p.yaml'),
    [
      'name: sel',
      'stages:',
      `  a: { uses: ${COUNT} }`,
      `  b: { uses: ${COUNT}, needs: [a] }`,
      `  c: { uses: ${COUNT}, needs: [a] }`,
      `  d: { uses: ${COUNT}, needs: [b, c] }`,
      '',
    ].join('\n'),
  );
});

describe('stage selection and forcing', () => {
  it('plans --until b as a and b only, without touching the store', async () => {
    const plan = await pipeline('plan', 'p.yaml', '--until', 'b');
    expect(plan.code).toBe(0);
    expect(plan.out).toMatch(/^a: run \([0-9a-f]{8}\), never built\nb: run \([0-9a-f]{8}\), never built\nc: not selected, not built\nd: not selected, not built$/);
    expect(existsSync(path.join(dir, 'checkpoints'))).toBe(false);
  });

  it('refuses --only b while its input a was never built, naming both', async () => {
    const run = await pipeline('run', 'p.yaml', '--only', 'b');
    expect(run.code).toBe(2);
    expect(run.err).toContain('error: stages.b.needs: b needs a, which is not selected and was never built with its current configuration');
    expect(runsOf(dir)).toEqual([]);
  });

  it('builds --until b, then --from c reads a and b from the store', async () => {
    expect((await pipeline('run', 'p.yaml', '--until', 'b')).code).toBe(0);
    expect(runsOf(dir)).toEqual(['a', 'b']);
    const from = await pipeline('run', 'p.yaml', '--from', 'c');
    expect(from.code).toBe(0);
    expect(from.out).toContain('a: not selected, using');
    expect(runsOf(dir).slice(2)).toEqual(['c', 'd']);
  });

  it('--force rebuilds a cached stage in place', async () => {
    const forced = await pipeline('run', 'p.yaml', '--only', 'a', '--force', 'a');
    expect(forced.code).toBe(0);
    expect(forced.out).toMatch(/^a: run \([0-9a-f]{8}\), forced$/m);
    expect(runsOf(dir).at(-1)).toBe('a');
    expect(readdirSync(path.join(dir, 'checkpoints/objects'))).toHaveLength(4);
  });

  it('names unknown stages in selection flags', async () => {
    const bad = await pipeline('plan', 'p.yaml', '--from', 'dd', '--force', 'x');
    expect(bad.code).toBe(2);
    expect(bad.err).toBe('--from dd: error: no stage named "dd" (did you mean "d"?)\n--force x: error: no stage named "x"\n2 errors');
  });
});

describe('inspection commands', () => {
  it('ls and show describe the current artifacts', async () => {
    const ls = JSON.parse((await pipeline('ls', 'p.yaml', '--json')).out) as { stage: string; files: number }[];
    // count-stage writes out.txt and logs no step metrics, so each artifact holds one file.
    expect(ls.map((row) => [row.stage, row.files])).toEqual([['a', 1], ['b', 1], ['c', 1], ['d', 1]]);
    const show = JSON.parse((await pipeline('show', 'p.yaml', 'd', '--json')).out) as { inputs: Record<string, string>; fingerprint: string; metrics: { inputs: number } };
    expect(Object.keys(show.inputs)).toEqual(['b', 'c']);
    expect(show.metrics).toEqual({ inputs: 2 });
    const byPrefix = await pipeline('show', 'p.yaml', show.fingerprint.slice(0, 10));
    expect(byPrefix.out.split('\n')[0]).toBe(`d (${COUNT} 1, files) ${show.fingerprint}`);
    expect((await pipeline('show', 'p.yaml', 'nope')).code).toBe(2);
  });

  it('gc --dry-run lists unreferenced objects and deletes nothing', async () => {
    // Changing a's param (then running) leaves the old a, b, c, d objects unreferenced, and the
    // config with that --set does not plan them either (without it, it would: gc keeps those).
    expect((await pipeline('run', 'p.yaml', '--set', 'stages.a.with.value=w')).code).toBe(0);
    const dry = await pipeline('gc', 'p.yaml', '--dry-run', '--set', 'stages.a.with.value=w');
    expect(dry.out.split('\n').filter((line) => line.startsWith('would remove object'))).toHaveLength(4);
    expect(readdirSync(path.join(dir, 'checkpoints/objects'))).toHaveLength(8);
  });

  it('gc keeps the work folder (step checkpoints) of a stage the config would resume, unless --resumable', async () => {
    // A stopped build of d under a new param leaves a work folder at d's planned fingerprint; an old
    // build's leaves one nothing plans.
    const status = JSON.parse((await pipeline('status', 'p.yaml', '--json', '--set', 'stages.d.with.value=stopped')).out) as { stages: { name: string; fingerprint: string }[] };
    const resumable = status.stages.find((row) => row.name === 'd')!.fingerprint;
    const stale = 'f'.repeat(64);
    for (const fp of [resumable, stale]) mkdirSync(path.join(dir, 'checkpoints/work', fp, 'checkpoints/step-1'), { recursive: true });
    await stepCheckpoints(path.join(dir, 'checkpoints/work', resumable)).save(1, {});

    const gc = await pipeline('gc', 'p.yaml', '--set', 'stages.d.with.value=stopped');
    expect(gc.out).toContain(`kept work ${resumable.slice(0, 8)} (d: the next run resumes from step checkpoint at step 1; --resumable removes it)`);
    expect(gc.out).toContain(`removed work ${stale.slice(0, 8)}`);
    expect(readdirSync(path.join(dir, 'checkpoints/work'))).toEqual([resumable]);

    // --resumable deletes it too.
    await pipeline('gc', 'p.yaml', '--resumable', '--set', 'stages.d.with.value=stopped');
    expect(readdirSync(path.join(dir, 'checkpoints/work'))).toEqual([]);
  });

  it('stages prints each type with its documented params and defaults', async () => {
    const stages = await pipeline('stages');
    expect(stages.out).toContain('exec (v1, light, produces files): ');
    expect(stages.out).toContain('  cwd (string, default "."): Working folder');
    expect(stages.out).toContain('  command (string | string[], required): ');
  });

  it('a --store that is a file, or lies under one, is a usage error naming it (not an internal error)', async () => {
    writeFileSync(path.join(dir, 'not-a-folder'), 'x');
    for (const command of ['status', 'run', 'ls', 'gc']) {
      const result = await pipeline(command, 'p.yaml', '--store', 'not-a-folder');
      expect(result.code, command).toBe(2);
      expect(result.err, command).toContain(`--store not-a-folder: error: ${path.join(dir, 'not-a-folder')} is a file: the store is a folder (created when missing); name a folder`);
    }
    const below = await pipeline('plan', 'p.yaml', '--store', 'not-a-folder/store');
    expect(below.code).toBe(2);
    expect(below.err).toContain(`${path.join(dir, 'not-a-folder')} is a file, so ${path.join(dir, 'not-a-folder/store')} cannot be created`);
  });

  it('exits 2 on bad usage', async () => {
    expect((await pipeline('frobnicate')).code).toBe(2);
    expect((await pipeline('run', 'p.yaml', '--on-error', 'sometimes')).code).toBe(2);
    expect((await pipeline('validate', 'missing.yaml')).err).toMatch(/^missing\.yaml: error: cannot read the config: ENOENT/);
  });
});

describe('failures and remote stage builds', () => {
  it('--on-error fail (the default) starts nothing after a failure and names what it skipped', async () => {
    writeFileSync(
      path.join(dir, 'fail.yaml'),
      [
        'name: fail',
        'stages:',
        "  bad: { uses: exec, with: { command: 'exit 4' } }",
        `  later: { uses: ${COUNT}, needs: [bad] }`,
        `  independent: { uses: ${COUNT}, needs: [slow] }`,
        "  slow: { uses: exec, with: { command: 'sleep 0.2' } }",
        '',
      ].join('\n'),
    );
    // One slot: bad runs (and fails) first, so slow and independent never start.
    const run = await pipeline('run', 'fail.yaml', '--concurrency', '1');
    expect(run.code).toBe(1);
    expect(run.err).toContain('error: stage bad failed: command exited with code 4');
    // Listed in topological order: later (after bad), slow, then independent (after slow).
    expect(run.err).toContain('not run: later (upstream bad failed), slow (the run stopped after a failure (--on-error fail)), independent (upstream slow was skipped)');
  });

  it('run-stage builds one stage as planned, and refuses a fingerprint it does not reproduce', async () => {
    const planned = (await pipeline('plan', 'p.yaml', '--set', 'stages.a.with.value=r')).out.match(/^a: rerun \(([0-9a-f]{8})\)/m)?.[1];
    expect(planned).toBeDefined();
    const wrong = await pipeline('run-stage', 'p.yaml', 'a', '--set', 'stages.a.with.value=r', '--expect-fingerprint', 'f'.repeat(64));
    expect(wrong.code).toBe(2);
    expect(wrong.err).toContain(`but ${'f'.repeat(64)} was expected`);
    const built = await pipeline('run-stage', 'p.yaml', 'a', '--set', 'stages.a.with.value=r');
    expect(built.code).toBe(0);
    expect(built.out).toMatch(/^a: succeeded in /m);
    expect((await pipeline('plan', 'p.yaml', '--set', 'stages.a.with.value=r')).out).toContain(`a: cached (${planned})`);
  });
});

describe('exec stage', () => {
  it('passes inputs, output, stage and seed as variables, and fingerprints the files it names', async () => {
    writeFileSync(path.join(dir, 'make.sh'), 'echo "$N" > "$PIPELINE_OUT/n.txt"\n');
    writeFileSync(
      path.join(dir, 'exec.yaml'),
      [
        'name: ex',
        'seed: 9',
        'stages:',
        '  src: { uses: exec, with: { command: [sh, make.sh], files: [make.sh], env: { N: 3 } } }',
        '  use:',
        '    uses: exec',
        '    needs: [src]',
        '    with:',
        '      command: |',
        '        cat "$PIPELINE_INPUT_SRC/n.txt" > "$PIPELINE_OUT/got.txt"',
        '        echo "$PIPELINE_STAGE $PIPELINE_SEED" >> "$PIPELINE_OUT/got.txt"',
        '        printf %s "$PIPELINE_INPUTS" > "$PIPELINE_OUT/inputs.json"',
        '',
      ].join('\n'),
    );
    expect((await pipeline('run', 'exec.yaml')).code).toBe(0);
    const show = JSON.parse((await pipeline('show', 'exec.yaml', 'use', '--json')).out) as { path: string; inputs: { src: string } };
    // src wrote N (3, a YAML number passed as text); use read it through PIPELINE_INPUT_SRC.
    expect(readFileSync(path.join(show.path, 'got.txt'), 'utf8')).toBe('3\nuse 9\n');
    expect(JSON.parse(readFileSync(path.join(show.path, 'inputs.json'), 'utf8'))).toEqual({
      src: path.join(dir, 'checkpoints/objects', show.inputs.src),
    });
    writeFileSync(path.join(dir, 'make.sh'), '# edited\necho "$N" > "$PIPELINE_OUT/n.txt"\n');
    const plan = await pipeline('plan', 'exec.yaml');
    expect(plan.out).toMatch(/^src: rerun \([0-9a-f]{8}\), user file make\.sh changed\nuse: rerun \([0-9a-f]{8}\), input src changed$/);
  });
});

describe('seed_offset', () => {
  it("adds to the pipeline seed for that stage alone: its seed, its fingerprint, and a sweep over seed moves it too", async () => {
    const config = (seed: number, offset: number) =>
      [
        'name: offsets',
        `seed: ${seed}`,
        'stages:',
        '  a: { uses: exec, with: { command: \'echo $PIPELINE_SEED > "$PIPELINE_OUT/seed.txt"\' } }',
        `  b: { uses: exec, seed_offset: ${offset}, with: { command: 'echo $PIPELINE_SEED > "$PIPELINE_OUT/seed.txt"' } }`,
        '',
      ].join('\n');
    const seedOf = async (stage: string) => {
      const show = JSON.parse((await pipeline('show', 'offsets.yaml', stage, '--json')).out) as { path: string };
      return readFileSync(path.join(show.path, 'seed.txt'), 'utf8').trim();
    };
    writeFileSync(path.join(dir, 'offsets.yaml'), config(9, 2));
    expect((await pipeline('run', 'offsets.yaml')).code).toBe(0);
    expect([await seedOf('a'), await seedOf('b')]).toEqual(['9', '11']);
    // The same command under another offset is another artifact, and the plan says why.
    writeFileSync(path.join(dir, 'offsets.yaml'), config(9, 3));
    expect((await pipeline('plan', 'offsets.yaml')).out).toMatch(/^a: cached \([0-9a-f]{8}\)\nb: rerun \([0-9a-f]{8}\), seed changed: 11 -> 12$/);
    writeFileSync(path.join(dir, 'offsets.yaml'), config(20, 3));
    expect((await pipeline('run', 'offsets.yaml')).code).toBe(0);
    expect([await seedOf('a'), await seedOf('b')]).toEqual(['20', '23']);
  });
});

describe('plain progress lines', () => {
  it('prints state changes at once and running progress only on the timer', async () => {
    const { plainDisplay } = await import('../../pipeline/progress/display.ts');
    // Fake timers: on a loaded machine a real 30 ms timer may fire late, and the test would race it.
    vi.useFakeTimers();
    try {
      const lines: string[] = [];
      const display = plainDisplay(['train'], (line) => lines.push(line.replace(/^\S+ /, '')), 30);
      display.event({ type: 'start', stage: 'train', time: Date.now() });
      for (let step = 1; step <= 100; step++) display.event({ type: 'progress', stage: 'train', done: step, total: 200, unit: 'steps' });
      expect(lines).toEqual(['train: started']); // 100 updates, no lines yet
      vi.advanceTimersByTime(45);
      display.event({ type: 'warning', stage: 'train', message: '2 examples too long' });
      display.stop();
      expect(lines).toEqual(['train: started', 'train: running 0.0s 100/200 steps (50%)', 'train: warning: 2 examples too long']);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('resource classes', () => {
  it('runs at most resources.train train stages at once, whatever the concurrency', async () => {
    // Each stage holds a directory as a mutex for 0.3 s; a second one inside that window fails.
    const hold = "{ uses: exec, resources: train, with: { command: 'mkdir held || exit 9; sleep 0.3; rmdir held' } }";
    writeFileSync(path.join(dir, 'train.yaml'), `name: tr\nstages:\n  t1: ${hold}\n  t2: ${hold}\n  t3: ${hold}\n`);
    expect((await pipeline('run', 'train.yaml', '--concurrency', '3')).code).toBe(0);
    // The same stages allowed to train two at a time collide: the check above can fail.
    const parallel = await pipeline('run', 'train.yaml', '--concurrency', '3', '--set', 'resources.train=2', '--on-error', 'keep-going', '--store', 'parallel');
    expect(parallel.code).toBe(1);
    expect(parallel.err).toContain('failed: command exited with code 9');
  });
});

describe('export', () => {
  it('refuses a stage that is not in the config, and one whose artifact is not a checkpoint, naming each', async () => {
    expect((await pipeline('run', 'p.yaml', '--until', 'a')).code).toBe(0);
    const unknown = await pipeline('export', 'p.yaml', 'zz');
    expect(unknown.code).toBe(2);
    expect(unknown.err).toBe('error: p.yaml has no stage "zz" (stages: a, b, c, d)');
    const files = await pipeline('export', 'p.yaml', 'a');
    expect(files.code).toBe(2);
    expect(files.err).toBe('error: a produces files, not a checkpoint: only model checkpoints export to ONNX');
    expect(existsSync(path.join(dir, 'checkpoints', 'exports'))).toBe(false);
  });
});
