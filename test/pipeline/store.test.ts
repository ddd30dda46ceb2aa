// The artifact store reads refs that anyone could have edited: their contents become paths.
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../pipeline/store/store.ts';
import { tempDir } from './cli-helpers.ts';

const { dir, remove } = tempDir('pipeline-store-');
afterAll(remove);

describe('ArtifactStore refs', () => {
  it('reads a fingerprint, and refuses a ref whose content is not one, naming the file', async () => {
    const store = new ArtifactStore(dir);
    const fingerprint = 'ab'.repeat(32);
    await store.writeRef('p', 'good', fingerprint);
    expect(await store.readRef('p', 'good')).toBe(fingerprint);
    mkdirSync(path.join(dir, 'refs', 'p'), { recursive: true });
    writeFileSync(path.join(dir, 'refs', 'p', 'bad'), '../../somewhere\n');
    await expect(store.readRef('p', 'bad')).rejects.toThrow(
      `${path.join(dir, 'refs', 'p', 'bad')}: expected a fingerprint (64 hex digits), found "../../somewhere"`,
    );
  });
});
