// Issue 34 item 12: a store on a file system that fills up (a 1 MB tmpfs; needs root to mount,
// skipped otherwise). The run fails with one line naming the path, its record is not left
// "running", no `.tmp-` file stays, and gc does not keep output nothing can resume from.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { inProcess, workspaces } from './cli-helpers.ts';

const workspace = workspaces();
const dir = workspace('pipeline-disk-full-');
const store = path.join(dir, 'store');
mkdirSync(store);

function mountTmpfs(): string | undefined {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return 'needs root on Linux to mount a tmpfs';
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', store], { stdio: 'pipe' });
    return undefined;
  } catch (error) {
    return `mount failed: ${(error as Error).message}`;
  }
}
const skip = mountTmpfs();
if (skip) console.warn(`skipping the disk-full tests: ${skip}`);
// Unmounted also when a test fails, before the workspace is removed (hooks run in reverse order).
afterAll(() => {
  if (!skip) execFileSync('umount', [store]);
});

describe.skipIf(skip !== undefined)('a full disk', () => {
  it('fails the run with a clear line, keeps the run record consistent, and gc drops the unresumable output', async () => {
    writeFileSync(
      path.join(dir, 'p.yaml'),
      ['name: d', `store: ${store}`, 'stages:', `  small: { uses: exec, with: { command: 'echo ok > "$PIPELINE_OUT/ok.txt"' } }`, `  big: { uses: exec, needs: [small], with: { command: 'head -c 3000000 /dev/zero > "$PIPELINE_OUT/big.bin"' } }`, ''].join('\n'),
    );
    const pipeline = inProcess(dir);
    const run = await pipeline('run', 'p.yaml');
    expect(run.code).toBe(1);
    expect(run.err).not.toContain('Internal error');
    expect(run.err).toMatch(/^error: stage big failed: command exited with code 1 \(the file system of .*\/work\/\w+ has \d+ B free: is the disk full\?\)$/m);
    // The final record did not fit either: one line naming the file and the bytes it needed.
    expect(run.err).toMatch(new RegExp(`^error: no space left on the device of ${store}/runs/d/[-\\wTZ]+\\.json: writing it needs \\d+ B, \\d+ B are free; .* holds this run's record in short, or is gone$`, 'm'));
    expect(readdirSync(path.join(store, 'runs', 'd')).filter((name) => name.includes('.tmp-'))).toEqual([]);
    const latest = JSON.parse(readFileSync(path.join(store, 'runs', 'd', 'latest.json'), 'utf8')) as { status: string; error: string };
    expect(latest.status).toBe('failed');
    expect((await pipeline('status', 'p.yaml')).out).toMatch(/^last run: failed, /m);

    // big's work folder holds only its failed output: nothing to resume, so gc frees it.
    const gc = await pipeline('gc', 'p.yaml');
    expect(gc.code).toBe(0);
    expect(gc.out).toMatch(/^removed work \w+ \(\d+ B\)$/m);
    expect(gc.out).not.toContain('kept work');
    expect(readdirSync(path.join(store, 'work'))).toEqual([]);
  });
});
