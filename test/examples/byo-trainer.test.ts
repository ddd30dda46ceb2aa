/**
 * examples/byo-trainer: a PyTorch SFT script as a `uses: exec` stage between tfjs stages, through
 * the real CLI. Both directions of the checkpoint contract: PyTorch reads the tfjs `sft`
 * checkpoint (and trains it: its loss falls), and the tfjs sample, dpo and eval stages read the
 * PyTorch one unchanged. Skips, saying why, where Debian's python3-torch is absent.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, tempDir } from '../pipeline/cli-helpers.ts';

const config = path.resolve(import.meta.dirname, '../../examples/byo-trainer/pipeline.yaml');
const torchMissing = (() => {
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'pipe' });
    return undefined;
  } catch (error) {
    return `no torch for /usr/bin/python3 (apt-get install python3-torch): ${(error as Error).message.split('\n')[0]}`;
  }
})();

const { dir, remove } = tempDir('byo-trainer-');
afterAll(remove);

interface Manifest {
  stage: string;
  kind: string;
}

function artifactOf(stage: string): { dir: string; manifest: Manifest } {
  const objects = path.join(dir, 'store', 'objects');
  for (const d of readdirSync(objects)) {
    const manifest = JSON.parse(readFileSync(path.join(objects, d, 'manifest.json'), 'utf8')) as Manifest;
    if (manifest.stage === stage) return { dir: path.join(objects, d), manifest };
  }
  throw new Error(`no artifact of ${stage}`);
}

describe.skipIf(torchMissing !== undefined)(`bring your own trainer${torchMissing ? ` (skipped: ${torchMissing})` : ''}`, () => {
  it('PyTorch trains the tfjs checkpoint, and tfjs sample, dpo and eval read the PyTorch one', async () => {
    const run = await cli(dir, ['run', config, '--store', path.join(dir, 'store')]);
    expect(run.stderr + run.stdout).toMatch(/succeeded: 9 built, 0 cached/);
    const torch = artifactOf('torch-sft');
    expect(torch.manifest.kind).toBe('checkpoint');
    for (const file of ['config.json', 'model.safetensors', 'tokenizer.json', 'completion_format.json']) expect(readdirSync(torch.dir)).toContain(file);
    // PyTorch changed the tfjs weights it read.
    expect(readFileSync(path.join(torch.dir, 'model.safetensors')).equals(readFileSync(path.join(artifactOf('sft').dir, 'model.safetensors')))).toBe(false);
    const log = readFileSync(path.join(dir, 'store', 'logs', 'byo-trainer', 'torch-sft.log'), 'utf8');
    const losses = [...log.matchAll(/step \d+\/8: loss ([\d.]+)/g)].map((m) => Number(m[1]));
    expect(losses).toHaveLength(8);
    expect(losses[7]!).toBeLessThan(losses[0]!);
    expect(artifactOf('eval').manifest.kind).toBe('eval');
  }, 600_000);
});
