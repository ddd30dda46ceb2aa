/**
 * `configs/smoke.yaml` end to end through the CLI, as CI runs it: world -> kg -> icl -> cot -> sft
 * builds, and the tiny model's greedy completions on every dev prompt parse (format validity at least
 * 0.95, the bar). Two data-parallel ranks are pinned so the run, and so the figure, is the
 * same on every machine (`auto` would follow the core count). How long it takes is measured by
 * `npm run bench:smoke`, not here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, tempDir } from './pipeline/cli-helpers.ts';

const root = path.resolve(import.meta.dirname, '..');
const { dir, remove } = tempDir('smoke-');
afterAll(remove);

describe('configs/smoke.yaml', () => {
  it('builds its five stages and the SFT model writes parseable completions for 95% of dev prompts', async () => {
    const store = path.join(dir, 'store');
    const result = await cli(root, ['run', 'configs/smoke.yaml', '--store', store, '--set', 'engine.data_parallel=2']);
    expect(result.stdout + result.stderr).toMatch(/succeeded: 5 built, 0 cached, 0 failed/);

    const objects = path.join(store, 'objects');
    const manifests = readdirSync(objects).map((d) => JSON.parse(readFileSync(path.join(objects, d, 'manifest.json'), 'utf8')));
    const sft = manifests.find((m) => m.stage === 'sft');
    const icl = manifests.find((m) => m.stage === 'icl');
    const devPrompts = readFileSync(path.join(objects, icl.fingerprint, 'dev.jsonl'), 'utf8').trim().split('\n').length;
    // The probe is every dev prompt of the smoke world, not a sample of them.
    expect(sft.metrics.dev_probe_prompts).toBe(devPrompts);
    expect(sft.metrics.data_parallel_ranks).toBe(2);
    expect(sft.metrics.dev_format_valid).toBeGreaterThanOrEqual(0.95);
  }, 900_000);
});
