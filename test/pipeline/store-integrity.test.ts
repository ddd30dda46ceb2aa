// Issue 34 items 1, 2, 3 and 8: a store that a kill during a delete, a lost or changed file, or a
// broken manifest cannot make lie. Kills land at named points (PIPELINE_FAULT, store/fault.ts),
// not by timing.
import { chmodSync, existsSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliBackground, inProcess, workspaces } from './cli-helpers.ts';

const workspace = workspaces();
const ROWS = 120;

/** `a` writes ROWS files; `b` counts a's lines, so it reads every one of them. */
function setUp(prefix: string) {
  const dir = workspace(prefix);
  writeFileSync(
    path.join(dir, 'p.yaml'),
    [
      'name: s',
      'stages:',
      `  a: { uses: exec, with: { command: 'for i in $(seq 1 ${ROWS}); do echo "row $i" > "$PIPELINE_OUT/f$i.txt"; done', env: { V: 1 } } }`,
      `  b: { uses: exec, needs: [a], with: { command: 'cat "$PIPELINE_INPUT_A"/f*.txt | wc -l > "$PIPELINE_OUT/count.txt"' } }`,
      '',
    ].join('\n'),
  );
  const pipeline = inProcess(dir);
  const store = path.join(dir, 'checkpoints');
  const objectOf = async (stage: string) => {
    const status = JSON.parse((await pipeline('status', 'p.yaml', '--json')).out) as { stages: { name: string; fingerprint: string }[] };
    const fingerprint = status.stages.find((row) => row.name === stage)?.fingerprint ?? '';
    return { fingerprint, dir: path.join(store, 'objects', fingerprint) };
  };
  const count = async () => {
    const b = await objectOf('b');
    return readFileSync(path.join(b.dir, 'count.txt'), 'utf8').trim();
  };
  return { dir, pipeline, store, objectOf, count };
}

describe('deleting an object (items 1 and 2)', () => {
  it('a run --force killed while removing the replaced object leaves the new one whole', async () => {
    const { dir, pipeline, store, objectOf } = setUp('integrity-force-');
    expect((await pipeline('run', 'p.yaml')).code).toBe(0);
    const a = await objectOf('a');
    const killed = await cliBackground(dir, ['run', 'p.yaml', '--force', 'a'], { PIPELINE_FAULT: 'trash:half-removed' }).done;
    expect(killed.code).toBe(137);
    // The half-removed folder is the replaced one, in the trash; objects/ holds the new one whole.
    expect(readdirSync(path.join(store, 'trash'))).toHaveLength(1);
    expect(readdirSync(a.dir)).toHaveLength(ROWS + 1);
    const verify = await pipeline('verify', 'p.yaml');
    expect(verify.code).toBe(0);
    expect(verify.out).toContain('2 objects verified: 2 whole, 0 damaged');
    expect(verify.out).toMatch(/^leftover .*trash.* \(left by an interrupted command\)$/m);
    const rerun = await pipeline('run', 'p.yaml');
    expect(rerun.out).toContain('0 built, 2 cached');
    expect(readdirSync(path.join(store, 'trash'))).toEqual([]);
  });

  it('a run --force killed between moving the old object away and publishing the new one rebuilds it', async () => {
    const { dir, pipeline, objectOf, count } = setUp('integrity-force-gap-');
    expect((await pipeline('run', 'p.yaml')).code).toBe(0);
    const killed = await cliBackground(dir, ['run', 'p.yaml', '--force', 'a'], { PIPELINE_FAULT: 'publish:old-trashed' }).done;
    expect(killed.code).toBe(137);
    expect(existsSync((await objectOf('a')).dir)).toBe(false);
    expect((await pipeline('plan', 'p.yaml')).out).toMatch(/^a: rerun \(\w+\), its artifact \w+ is missing from the store$/m);
    const rerun = await pipeline('run', 'p.yaml');
    expect(rerun.out).toContain('1 built, 1 cached');
    expect(await count()).toBe(String(ROWS));
  });

  it('a gc killed half way through deleting an object leaves no half object that plans as cached', async () => {
    const { dir, pipeline, store, objectOf, count } = setUp('integrity-gc-');
    expect((await pipeline('run', 'p.yaml')).code).toBe(0);
    const first = await objectOf('a');
    // Another V makes new a and b objects; gc with that --set removes the first two.
    expect((await pipeline('run', 'p.yaml', '--set', 'stages.a.with.env.V=2')).code).toBe(0);
    const killed = await cliBackground(dir, ['gc', 'p.yaml', '--set', 'stages.a.with.env.V=2'], { PIPELINE_FAULT: 'trash:half-removed' }).done;
    expect(killed.code).toBe(137);
    const trash = readdirSync(path.join(store, 'trash'));
    expect(trash).toHaveLength(1);
    // The object being deleted is wholly out of objects/ (half of it is in the trash).
    const gone = trash[0]!.slice(0, 64);
    expect(existsSync(path.join(store, 'objects', gone))).toBe(false);
    // Back to V=1: whichever of the first two objects went is rebuilt, not reported cached.
    const planned = (await pipeline('plan', 'p.yaml')).out;
    expect(planned).toContain(gone === first.fingerprint ? 'a: rerun' : 'b: rerun');
    expect((await pipeline('run', 'p.yaml')).code).toBe(0);
    expect(await count()).toBe(String(ROWS));
    expect(readdirSync(path.join(store, 'trash'))).toEqual([]);
  });

  it('an object that lost files but kept its manifest (an in-place delete cut short) is rebuilt, never cached', async () => {
    const { pipeline, objectOf, count } = setUp('integrity-half-');
    expect((await pipeline('run', 'p.yaml')).code).toBe(0);
    const a = await objectOf('a');
    chmodSync(a.dir, 0o755);
    for (let i = 1; i <= ROWS / 2; i++) rmSync(path.join(a.dir, `f${i}.txt`));
    const status = await pipeline('status', 'p.yaml');
    expect(status.out).toMatch(/^ {2}a {16}out of date/m);
    expect((await pipeline('plan', 'p.yaml')).out).toMatch(/^a: rerun \(\w+\), its stored artifact is damaged \(f1\.txt is missing; f10\.txt is missing; and 58 more\)$/m);
    const rerun = await pipeline('run', 'p.yaml', '--force', 'b');
    expect(rerun.code).toBe(0);
    expect(rerun.out).toContain('2 built, 0 cached');
    expect(await count()).toBe(String(ROWS));
  });

  it('a non-empty objects/<fp> without a manifest is moved aside, not an ENOTEMPTY on every run', async () => {
    const { pipeline, objectOf, count } = setUp('integrity-no-manifest-');
    expect((await pipeline('run', 'p.yaml')).code).toBe(0);
    const a = await objectOf('a');
    chmodSync(a.dir, 0o755);
    rmSync(path.join(a.dir, 'manifest.json'));
    for (let i = 1; i <= 30; i++) rmSync(path.join(a.dir, `f${i}.txt`));
    const rerun = await pipeline('run', 'p.yaml');
    expect(rerun.err).not.toContain('error');
    expect(rerun.code).toBe(0);
    expect(rerun.out).toMatch(/^a: rerun \(\w+\), its stored artifact is damaged \(.*manifest\.json is missing/m);
    expect(readdirSync(a.dir)).toHaveLength(ROWS + 1);
    expect(await count()).toBe(String(ROWS));
  });
});

describe('verification (item 3)', () => {
  it('publishes read-only, notices a changed byte on use, and verify names it and --repair clears it', async () => {
    const { pipeline, objectOf, count } = setUp('integrity-verify-');
    expect((await pipeline('run', 'p.yaml')).code).toBe(0);
    const a = await objectOf('a');
    const file = path.join(a.dir, 'f7.txt');
    expect(statSync(file).mode & 0o222).toBe(0);
    expect(statSync(a.dir).mode & 0o222).toBe(0);

    // Same size, one byte different, time put back: only the full check (a re-hash) sees it.
    const recorded = (JSON.parse(readFileSync(path.join(a.dir, 'manifest.json'), 'utf8')) as { files: Record<string, { mtimeMs: number }> }).files['f7.txt']!.mtimeMs;
    chmodSync(file, 0o644);
    writeFileSync(file, 'row 8\n');
    utimesSync(file, new Date(), recorded / 1000);
    expect((await pipeline('plan', 'p.yaml')).out).toMatch(/^a: cached/m);
    const verify = await pipeline('verify', 'p.yaml');
    expect(verify.code).toBe(1);
    expect(verify.out).toContain(`DAMAGED ${a.fingerprint} (s/a): f7.txt does not match its sha256 in the manifest`);
    expect(verify.out).toContain('2 objects verified: 1 whole, 1 damaged');

    // With its time changed (any ordinary write), the cheap check on every use sees it too.
    utimesSync(file, new Date(), new Date());
    expect((await pipeline('plan', 'p.yaml')).out).toMatch(/^a: rerun \(\w+\), its stored artifact is damaged \(f7\.txt does not match its sha256 in the manifest\)$/m);
    const repaired = await pipeline('verify', 'p.yaml', '--repair');
    expect(repaired.code).toBe(0);
    expect(repaired.out).toContain(`removed damaged ${a.fingerprint}`);
    expect(existsSync(a.dir)).toBe(false);
    expect((await pipeline('run', 'p.yaml')).out).toContain('1 built, 1 cached');
    expect(readFileSync(file, 'utf8')).toBe('row 7\n');
    expect(await count()).toBe(String(ROWS));
  });

  it('a stage that writes into its input fails naming it, and the input is rebuilt', async () => {
    const { dir, pipeline, objectOf } = setUp('integrity-input-write-');
    writeFileSync(
      path.join(dir, 'p.yaml'),
      ['name: s', 'stages:', `  a: { uses: exec, with: { command: 'echo one > "$PIPELINE_OUT/one.txt"' } }`, `  b: { uses: exec, needs: [a], with: { command: 'echo two >> "$PIPELINE_INPUT_A/one.txt"; echo ok > "$PIPELINE_OUT/b.txt"' } }`, ''].join('\n'),
    );
    const run = await pipeline('run', 'p.yaml');
    expect(run.code).toBe(1);
    const a = await objectOf('a');
    if (process.getuid?.() === 0) {
      // Root writes through the permissions: the check after the stage names what changed.
      expect(run.err).toContain(`error: stage b failed: stage b changed its input a (${a.dir}): one.txt has 8 B, its manifest says 4 B;`);
      expect((await pipeline('plan', 'p.yaml')).out).toMatch(/^a: rerun \(\w+\), its stored artifact is damaged \(one\.txt has 8 B/m);
    } else {
      expect(run.err).toContain('error: stage b failed: command exited with code 1');
      expect(readFileSync(path.join(a.dir, 'one.txt'), 'utf8')).toBe('one\n');
    }
  });
});

describe('a broken manifest.json (item 8)', () => {
  it('is never cached, and show, ls and report name the file', async () => {
    const { pipeline, objectOf } = setUp('integrity-broken-manifest-');
    expect((await pipeline('run', 'p.yaml')).code).toBe(0);
    const a = await objectOf('a');
    const manifest = path.join(a.dir, 'manifest.json');
    chmodSync(manifest, 0o644);
    writeFileSync(manifest, readFileSync(manifest, 'utf8').slice(0, 100));
    expect((await pipeline('plan', 'p.yaml')).out).toMatch(new RegExp(`^a: rerun \\(\\w+\\), its stored artifact is damaged \\(${manifest.replaceAll('/', '\\/').replaceAll('.', '\\.')} is not valid JSON`, 'm'));
    const show = await pipeline('show', 'p.yaml', 'a');
    expect(show.code).toBe(1);
    expect(show.err).toMatch(new RegExp(`^error: the artifact ${a.dir.replaceAll('/', '\\/')} is damaged: ${manifest.replaceAll('/', '\\/').replaceAll('.', '\\.')} is not valid JSON`));
    const ls = await pipeline('ls', 'p.yaml');
    expect(ls.code).toBe(0);
    expect(ls.out).toMatch(/^a .* DAMAGED: .*manifest\.json is not valid JSON/m);
    const report = await pipeline('report', 'p.yaml');
    expect(report.err).not.toContain('Internal error');
    expect(report.out + report.err).toContain(`${manifest} is not valid JSON`);
  });
});
