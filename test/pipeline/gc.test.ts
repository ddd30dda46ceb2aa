// `gc` in a store shared by two pipelines: what it must keep, and --dry-run saying what gc would do.
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stepCheckpoints } from '../../pipeline/executor/checkpoints.ts';
import { FIXTURES, inProcess, tempDir } from './cli-helpers.ts';

const { dir, remove } = tempDir('pipeline-gc-');
afterAll(remove);
const COUNT = path.join(FIXTURES, 'count-stage.ts');
const store = path.join(dir, 'checkpoints');

const pipeline = inProcess(dir);

beforeAll(() => {
  writeFileSync(path.join(dir, 'p.yaml'), ['name: p', 'stages:', `  a: { uses: ${COUNT} }`, `  b: { uses: ${COUNT}, needs: [a] }`, ''].join('\n'));
  writeFileSync(path.join(dir, 'q.yaml'), ['name: q', 'stages:', `  solo: { uses: ${COUNT}, with: { value: q } }`, ''].join('\n'));
});

describe('gc in a shared store', () => {
  it('keeps what any ref or the config points at, resumable work of any pipeline and named caches', async () => {
    expect((await pipeline('run', 'p.yaml')).code).toBe(0);
    expect((await pipeline('run', 'q.yaml')).code).toBe(0);
    // A run with --set moves b's ref to the b=z object: the b=v object is then no ref's, but
    // p.yaml as it stands still plans b=v as cached, so it must stay.
    expect((await pipeline('run', 'p.yaml', '--set', 'stages.b.with.value=z')).code).toBe(0);
    const planned = await pipeline('plan', 'p.yaml');
    expect(planned.out).toMatch(/^b: cached/m);
    // Pipeline q's stopped training run: a step checkpoint at step 3 in a work folder p knows nothing of.
    const otherWork = path.join(store, 'work', 'e'.repeat(64));
    await stepCheckpoints(otherWork).save(3, { acc: 1 });
    // The OpenAI teacher's answers, kept by cot across its fingerprints (paid for).
    mkdirSync(path.join(store, 'work', 'teacher-cache'), { recursive: true });
    writeFileSync(path.join(store, 'work', 'teacher-cache', 'answer.json'), '{"text":"x"}');
    // Work left by a failed attempt without checkpoints: nothing would resume from it.
    const deadWork = path.join(store, 'work', 'd'.repeat(64));
    mkdirSync(path.join(deadWork, 'out-1'), { recursive: true });
    const objectsBefore = readdirSync(path.join(store, 'objects')).sort();
    // a, b=v, solo, b=z: each is some ref's or planned by p.yaml.
    expect(objectsBefore).toHaveLength(4);

    const dry = await pipeline('gc', 'p.yaml', '--dry-run');
    const gc = await pipeline('gc', 'p.yaml');
    expect(gc.code).toBe(0);
    // The dry run said exactly what the real one did.
    expect(gc.out).toBe(dry.out.replaceAll('would remove', 'removed').replace('would free', 'freed'));
    expect(gc.out).toContain(`kept work eeeeeeee (step checkpoint at step 3, not a stage of p; --resumable removes it)`);
    expect(gc.out).toContain('kept cache teacher-cache (12 B; --clear-cache teacher-cache removes it)');
    expect(gc.out).toContain('removed work dddddddd (0 B)');
    expect(readdirSync(path.join(store, 'objects')).sort()).toEqual(objectsBefore);
    expect(existsSync(path.join(otherWork, 'checkpoints/LATEST'))).toBe(true);
    expect(existsSync(deadWork)).toBe(false);
    expect((await pipeline('plan', 'p.yaml')).out).toMatch(/^b: cached/m);

    // Asked by name, the cache goes; --resumable takes the checkpoints.
    await pipeline('gc', 'p.yaml', '--clear-cache', 'teacher-cache', '--resumable');
    expect(readdirSync(path.join(store, 'work'))).toEqual([]);
  });
});
