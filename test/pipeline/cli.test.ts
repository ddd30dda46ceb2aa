// End-to-end: the real CLI in a temp folder, with fixture stages that record each run.
import { appendFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, cliBackground, FIXTURES, runsOf, waitFor, workspaces } from './cli-helpers.ts';

const workspace = workspaces();

const COUNT = path.join(FIXTURES, 'count-stage.ts');
const STEPS = path.join(FIXTURES, 'steps-stage.ts');

// A diamond a -> (b, c) -> d. d's module is a one-line file in the workspace that re-exports the
// counting stage, so editing it changes d's user file and nothing else's.
function diamond(order: 'normal' | 'reordered'): string {
  if (order === 'normal') {
    return [
      'name: diamond',
      'seed: 1',
      'stages:',
      `  a: { uses: ${COUNT}, with: { value: x } }`,
      `  b: { uses: ${COUNT}, needs: [a], with: { value: y } }`,
      `  c: { uses: ${COUNT}, needs: [a] }`,
      '  d: { uses: ./stage-d.ts, needs: [b, c] }',
      '',
    ].join('\n');
  }
  // Same config: top-level keys, stage order and keys inside stages all permuted.
  return [
    'stages:',
    '  d: { needs: [b, c], uses: ./stage-d.ts }',
    `  c: { needs: [a], uses: ${COUNT} }`,
    `  b: { with: { value: y }, needs: [a], uses: ${COUNT} }`,
    `  a: { with: { value: x }, uses: ${COUNT} }`,
    'seed: 1',
    'name: diamond',
    '',
  ].join('\n');
}

describe('pipeline run (end to end)', () => {
  it('caches, reruns exactly what changed and explains why', async () => {
    const dir = workspace('pipeline-cache-');
    // A folder outside a "type": "module" package would make tsx load stage-d.ts as CommonJS.
    writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
    writeFileSync(path.join(dir, 'stage-d.ts'), `export { default } from '${COUNT}';\n`);
    writeFileSync(path.join(dir, 'p.yaml'), diamond('normal'));

    const first = await cli(dir, ['run', 'p.yaml']);
    expect(first.code, first.stderr).toBe(0);
    expect(runsOf(dir).sort()).toEqual(['a', 'b', 'c', 'd']);
    expect(first.stdout).toContain('a: run (');
    expect(first.stdout).toContain('never built');
    // d sees b's then c's output, each carrying a's: the artifacts flowed through the store.
    const refD = readFileSync(path.join(dir, 'checkpoints/refs/diamond/d'), 'utf8').trim();
    expect(readFileSync(path.join(dir, 'checkpoints/objects', refD, 'out.txt'), 'utf8')).toBe('a=x\nb=y\na=x\nc=v\nd=v\n');

    const second = await cli(dir, ['run', 'p.yaml']);
    expect(second.code).toBe(0);
    expect(runsOf(dir)).toHaveLength(4); // nothing ran again
    expect(second.stdout).toMatch(/^a: cached \([0-9a-f]{8}\)$/m);
    expect(second.stdout).toContain('succeeded: 0 built, 4 cached');

    // b's param changes: b and its descendant d rerun; a and c do not.
    const changed = await cli(dir, ['run', 'p.yaml', '--set', 'stages.b.with.value=z']);
    expect(changed.code).toBe(0);
    expect(runsOf(dir).slice(4).sort()).toEqual(['b', 'd']);
    expect(changed.stdout).toMatch(/^b: rerun \([0-9a-f]{8}\), params changed: value y -> z$/m);
    expect(changed.stdout).toMatch(/^d: rerun \([0-9a-f]{8}\), input b changed$/m);

    // Reordering every key of the YAML (back to value y) is the first config again: all cached.
    writeFileSync(path.join(dir, 'p.yaml'), diamond('reordered'));
    const reordered = await cli(dir, ['run', 'p.yaml']);
    expect(reordered.code).toBe(0);
    expect(runsOf(dir)).toHaveLength(6);
    expect(reordered.stdout).toContain('0 built, 4 cached');

    // Editing d's module (a comment) reruns d only, and says why.
    appendFileSync(path.join(dir, 'stage-d.ts'), '// edited\n');
    const edited = await cli(dir, ['run', 'p.yaml']);
    expect(edited.code).toBe(0);
    expect(runsOf(dir).slice(6)).toEqual(['d']);
    expect(edited.stdout).toMatch(/^d: rerun \([0-9a-f]{8}\), user file \.\/stage-d\.ts changed$/m);

    const status = JSON.parse((await cli(dir, ['status', 'p.yaml', '--json'])).stdout) as {
      lastRun: { status: string };
      stages: { name: string; upToDate: boolean }[];
    };
    expect(status.lastRun.status).toBe('succeeded');
    expect(status.stages.map((s) => [s.name, s.upToDate])).toEqual([['a', true], ['b', true], ['c', true], ['d', true]]);

    // Objects of the b=z run and the d versions before the edit are garbage now: b, d (z), d (y, old file).
    const gc = await cli(dir, ['gc', 'p.yaml']);
    expect(gc.code).toBe(0);
    expect(gc.stdout).toContain('kept 4 referenced objects');
    expect(readdirSync(path.join(dir, 'checkpoints/objects'))).toHaveLength(4);
  });

  it('a run killed mid-stage publishes nothing and the rerun resumes to the same result', async () => {
    const dir = workspace('pipeline-kill-');
    writeFileSync(path.join(dir, 'p.yaml'), `name: k\nseed: 5\nstages:\n  train: { uses: ${STEPS}, with: { steps: 6, sleep_ms: 150 } }\n`);
    const run = cliBackground(dir, ['run', 'p.yaml']);
    const work = path.join(dir, 'checkpoints/work');
    // Kill once LATEST names the step-2 checkpoint (the folder appears before LATEST points at it):
    // mid-stage, with steps 3..6 still to do.
    const latestIs = (fp: string, name: string) => {
      const file = path.join(work, fp, 'checkpoints/LATEST');
      return existsSync(file) && readFileSync(file, 'utf8').trim() >= name;
    };
    await waitFor(() => existsSync(work) && readdirSync(work).some((fp) => latestIs(fp, 'step-00000002')));
    run.child.kill('SIGKILL');
    await run.done;
    expect(existsSync(path.join(dir, 'checkpoints/objects'))).toBe(false);
    expect(existsSync(path.join(dir, 'checkpoints/refs/k/train'))).toBe(false);

    // The dead run's lock is stale (its pid is gone): the rerun takes it without waiting.
    const resumed = await cli(dir, ['run', 'p.yaml']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/train: run \([0-9a-f]{8}\), never built; resuming from step [2-6]/);
    const starts = runsOf(dir);
    expect(starts[0]).toBe('train start 0');
    expect(Number(starts[1]?.split(' ')[2])).toBeGreaterThanOrEqual(2);

    // The same config run uninterrupted in a fresh store ends identically.
    const clean = await cli(dir, ['run', 'p.yaml', '--store', 'clean', '--set', 'stages.train.with.sleep_ms=0']);
    expect(clean.code).toBe(0);
    const ref = (store: string) => readFileSync(path.join(dir, store, 'refs/k/train'), 'utf8').trim();
    const output = (store: string, file: string) => readFileSync(path.join(dir, store, 'objects', ref(store), file), 'utf8');
    const metrics = (store: string) => output(store, 'metrics.jsonl').trim().split('\n').map((line) => {
      const { step, acc } = JSON.parse(line) as { step: number; acc: number };
      return [step, acc];
    });
    expect(output('checkpoints', 'result.txt')).toBe(output('clean', 'result.txt'));
    // One line per step, 1..6, no duplicates from the killed attempt, same values.
    expect(metrics('checkpoints').map(([step]) => step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(metrics('checkpoints').map(([, acc]) => acc)).toEqual(metrics('clean').map(([, acc]) => acc));
    expect(existsSync(path.join(dir, 'checkpoints/work', ref('checkpoints')))).toBe(false);
  });

  it('SIGTERM stops the run cleanly: nothing published, lock released, run recorded as cancelled', async () => {
    const dir = workspace('pipeline-term-');
    writeFileSync(path.join(dir, 'p.yaml'), `name: t\nstages:\n  train: { uses: ${STEPS}, with: { steps: 50, sleep_ms: 100 } }\n  after: { uses: ${COUNT}, needs: [train] }\n`);
    const run = cliBackground(dir, ['run', 'p.yaml']);
    const work = path.join(dir, 'checkpoints/work');
    await waitFor(() => existsSync(work) && readdirSync(work).some((fp) => existsSync(path.join(work, fp, 'checkpoints/LATEST'))));
    run.child.kill('SIGTERM');
    const result = await run.done;
    expect(result.code).toBe(130);
    expect(result.stderr).toContain('SIGTERM: stopping; nothing unfinished is published');
    expect(result.stderr).toContain('not run: train (cancelled), after (upstream train cancelled)');
    expect(result.stdout).toContain('cancelled: 0 built, 0 cached, 0 failed, 2 not run');
    expect(existsSync(path.join(dir, 'checkpoints/objects'))).toBe(false);
    expect(existsSync(path.join(dir, 'checkpoints/lock'))).toBe(false);
    const record = JSON.parse(readFileSync(path.join(dir, 'checkpoints/runs/t/latest.json'), 'utf8')) as { status: string };
    expect(record.status).toBe('cancelled');
    // The step checkpoints stay for the next run to resume from.
    expect(readdirSync(work)).toHaveLength(1);
  });

  it('two runs on one store: --no-wait fails clearly, a waiting run then finds everything cached', async () => {
    const dir = workspace('pipeline-lock-');
    // The stage holds the first run (and so the store lock) until the test creates `release`.
    writeFileSync(
      path.join(dir, 'p.yaml'),
      "name: l\nstages:\n  gate: { uses: exec, with: { command: 'touch started; while [ ! -f release ]; do sleep 0.05; done' } }\n",
    );
    const first = cliBackground(dir, ['run', 'p.yaml']);
    await waitFor(() => existsSync(path.join(dir, 'started')));
    const busy = await cli(dir, ['run', 'p.yaml', '--no-wait']);
    const waiting = cliBackground(dir, ['run', 'p.yaml']);
    let waitingErr = '';
    waiting.child.stderr?.on('data', (chunk) => (waitingErr += chunk));
    await waitFor(() => waitingErr.includes('waiting for the store lock'));
    writeFileSync(path.join(dir, 'release'), '');
    const [done, waited] = await Promise.all([first.done, waiting.done]);

    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/^error: the store is locked by pid \d+ on .+ \(pipeline run p\.yaml, since .+\) \(.+lock\); rerun without --no-wait to wait for it$/m);
    expect(done.code).toBe(0);
    expect(done.stdout).toMatch(/^gate: run/m);
    expect(waited.code).toBe(0);
    expect(waited.stderr).toMatch(/waiting for the store lock held by pid \d+ on .+ \(pipeline run p\.yaml/);
    // It planned after the first run published, so it found the artifact instead of rebuilding.
    expect(waited.stdout).toMatch(/^gate: cached/m);
    expect(readdirSync(path.join(dir, 'checkpoints/objects'))).toHaveLength(1);
    expect(existsSync(path.join(dir, 'checkpoints/lock'))).toBe(false);
  });

  it('loads a user stage kept in a folder with no package.json (CommonJS to Node), and shows its warnings', async () => {
    const dir = workspace('pipeline-plain-folder-');
    writeFileSync(
      path.join(dir, 'stage.ts'),
      [
        `import count from '${COUNT}';`,
        "const stage = { ...count, name: 'plain', run: (ctx: any) => (ctx.log.warn('3 rows were odd'), count.run(ctx)) };",
        'export default stage;',
        '',
      ].join('\n'),
    );
    writeFileSync(path.join(dir, 'p.yaml'), ['name: plain', 'stages:', '  only: { uses: ./stage.ts, with: { value: z } }', ''].join('\n'));
    const result = await cli(dir, ['run', 'p.yaml']);
    expect(result.stderr).not.toContain('error');
    expect(result.stdout).toContain('succeeded: 1 built, 0 cached, 0 failed');
    expect(runsOf(dir)).toEqual(['only']);
    // On screen, not only in the stage log.
    expect(result.stderr).toMatch(/Z only: warning: 3 rows were odd\n/);
    expect(readFileSync(path.join(dir, 'checkpoints/logs/plain/only.log'), 'utf8')).toMatch(/ warn 3 rows were odd\n/);
  });

  it('--on-error keep-going builds what it can and names what it skipped', async () => {
    const dir = workspace('pipeline-fail-');
    writeFileSync(
      path.join(dir, 'p.yaml'),
      [
        'name: f',
        'stages:',
        "  bad: { uses: exec, with: { command: 'echo about to fail; exit 3' } }",
        `  after: { uses: ${COUNT}, needs: [bad] }`,
        `  other: { uses: ${COUNT} }`,
        '',
      ].join('\n'),
    );
    const result = await cli(dir, ['run', 'p.yaml', '--on-error', 'keep-going', '--concurrency', '1']);
    expect(result.code).toBe(1);
    expect(runsOf(dir)).toEqual(['other']);
    expect(result.stderr).toContain('error: stage bad failed: command exited with code 3');
    expect(result.stderr).toContain('not run: after (upstream bad failed)');
    expect(result.stdout).toContain('failed: 1 built, 0 cached, 1 failed, 1 not run');
    // The command's output went to the stage log, which the error names.
    expect(readFileSync(path.join(dir, 'checkpoints/logs/f/bad.log'), 'utf8')).toContain('info about to fail');

    const invalid = await cli(dir, ['validate', 'p.yaml', '--set', 'stages.bad.with.comand=x']);
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toContain('--set stages.bad.with.comand=x: error: stages.bad.with: unknown key "comand" (did you mean "command"?)');
  });
});
