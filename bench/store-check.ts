/**
 * What the store's checks cost on one object of many files (3,000 by default, as in issue 34's
 * repro): the cheap check every `plan`, `status` and `run` makes (manifest + each file's size and
 * time), against reading the manifest alone (what the store did before) and the full re-hash of
 * `pipeline verify`, in the same process.
 *
 *   npx tsx bench/store-check.ts [--files 3000] [--bytes 2048] [--repeats 5]
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { payloadFiles } from '../pipeline/executor/payload.ts';
import type { Manifest } from '../pipeline/stage-api.ts';
import { readJson } from '../pipeline/store/fs-util.ts';
import { ArtifactStore, MANIFEST } from '../pipeline/store/store.ts';

const { values } = parseArgs({ options: { files: { type: 'string', default: '3000' }, bytes: { type: 'string', default: '2048' }, repeats: { type: 'string', default: '5' } } });
const fileCount = Number(values.files);
const repeats = Number(values.repeats);
const root = mkdtempSync(path.join(os.tmpdir(), 'bench-store-check-'));
const store = new ArtifactStore(root);
const out = path.join(root, 'work', 'out');
mkdirSync(out, { recursive: true });
for (let i = 0; i < fileCount; i++) writeFileSync(path.join(out, `f${i}.bin`), randomBytes(Number(values.bytes)));
const fingerprint = 'a'.repeat(64);
const manifest = { fingerprint, pipeline: 'bench', stage: 'many', type: 'exec', kind: 'files', version: '1', params: {}, inputs: {}, userFiles: {}, seed: 0, created: '', durationS: 0, metrics: {}, files: await payloadFiles(out) } as Manifest;
await store.publish(out, manifest);

async function median(run: () => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const started = performance.now();
    await run();
    times.push(performance.now() - started);
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)] as number;
}

const manifestOnlyMs = await median(() => readJson(path.join(store.objectDir(fingerprint), MANIFEST)));
const cheapMs = await median(async () => {
  if ((await store.checkObject(fingerprint)).state !== 'ok') throw new Error('cheap check failed');
});
const fullMs = await median(async () => {
  if ((await store.checkObject(fingerprint, 'full')).state !== 'ok') throw new Error('full check failed');
});
await store.removeObject(fingerprint);
rmSync(root, { recursive: true, force: true });
console.log(
  JSON.stringify(
    {
      files: fileCount,
      bytes_per_file: Number(values.bytes),
      repeats,
      manifest_only_ms: Number(manifestOnlyMs.toFixed(1)),
      cheap_check_ms: Number(cheapMs.toFixed(1)),
      full_check_ms: Number(fullMs.toFixed(1)),
      cheap_over_manifest_only: Number((cheapMs / manifestOnlyMs).toFixed(1)),
      full_over_cheap: Number((fullMs / cheapMs).toFixed(1)),
      load_1min: Number(os.loadavg()[0]?.toFixed(1)),
    },
    null,
    2,
  ),
);
