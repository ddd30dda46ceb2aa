// Issue 34 items 4, 5 and 6, and exec's `inherit_env`: what an exec stage publishes is exactly what
// its command wrote by the time it exited, as files, under input names that cannot collide.
import { existsSync, lstatSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { inProcess, workspaces } from './cli-helpers.ts';

const workspace = workspaces();

function pipelineWith(prefix: string, stages: string[]) {
  const dir = workspace(prefix);
  writeFileSync(path.join(dir, 'p.yaml'), ['name: e', 'stages:', ...stages.map((line) => `  ${line}`), ''].join('\n'));
  const pipeline = inProcess(dir);
  const objectOf = async (stage: string) => {
    const status = JSON.parse((await pipeline('status', 'p.yaml', '--json')).out) as { stages: { name: string; fingerprint: string }[] };
    return path.join(dir, 'checkpoints', 'objects', status.stages.find((row) => row.name === stage)?.fingerprint ?? '');
  };
  return { dir, pipeline, objectOf };
}

describe('exec stage', () => {
  it('stops what the command left running when it exits, so nothing writes into the published object (item 4)', async () => {
    const { pipeline, objectOf } = pipelineWith('exec-late-', [
      `a: { uses: exec, with: { command: '(sleep 1; echo late > "$PIPELINE_OUT/late.txt") >/dev/null 2>&1 & echo on time > "$PIPELINE_OUT/x.txt"' } }`,
    ]);
    expect((await pipeline('run', 'p.yaml')).code).toBe(0);
    // Long enough for the background job to have written, had it lived.
    await sleep(2000);
    const object = await objectOf('a');
    expect(readdirSync(object).sort()).toEqual(['manifest.json', 'x.txt']);
    expect((await pipeline('verify', 'p.yaml')).code).toBe(0);
  });

  it('publishes a symbolic link as a copy of its target and refuses one that points nowhere (item 5)', async () => {
    const { pipeline, objectOf } = pipelineWith('exec-links-', [
      `a: { uses: exec, with: { command: 'echo kept > "$PIPELINE_WORK/real.txt"; ln -s "$PIPELINE_WORK/real.txt" "$PIPELINE_OUT/link.txt"' } }`,
      `b: { uses: exec, with: { command: 'ln -s "$PIPELINE_WORK/never-written" "$PIPELINE_OUT/dangling"' } }`,
    ]);
    const run = await pipeline('run', 'p.yaml', '--on-error', 'keep-going');
    expect(run.code).toBe(1);
    expect(run.err).toContain('error: stage b failed: the output holds a symbolic link that points nowhere: dangling -> ');
    const object = await objectOf('a');
    // The work folder is gone after publishing, and the copy does not depend on it.
    expect(lstatSync(path.join(object, 'link.txt')).isFile()).toBe(true);
    expect(readFileSync(path.join(object, 'link.txt'), 'utf8')).toBe('kept\n');
    const manifest = JSON.parse(readFileSync(path.join(object, 'manifest.json'), 'utf8')) as { files: Record<string, { bytes: number }> };
    expect(manifest.files['link.txt']?.bytes).toBe(5);
    expect(existsSync(path.join(await objectOf('b')))).toBe(false);
  });

  it('refuses needs whose PIPELINE_INPUT_* variables collide, naming both stages (item 6)', async () => {
    const { pipeline } = pipelineWith('exec-clash-', [
      `x-y: { uses: exec, with: { command: 'true' } }`,
      `x_y: { uses: exec, with: { command: 'true' } }`,
      `z: { uses: exec, needs: [x-y, x_y], with: { command: 'true' } }`,
    ]);
    const validate = await pipeline('validate', 'p.yaml');
    expect(validate.code).toBe(2);
    expect(validate.err).toContain('error: stages.z.with: needs x-y and x_y both become PIPELINE_INPUT_X_Y: rename one of those stages');
  });

  it('passes only the variables inherit_env names, plus its own', async () => {
    process.env.H34A_SECRET = 'sk-test';
    try {
      const { pipeline, objectOf } = pipelineWith('exec-env-', [
        `open: { uses: exec, with: { command: 'echo "\${H34A_SECRET:-unset}" > "$PIPELINE_OUT/seen.txt"' } }`,
        `closed: { uses: exec, with: { inherit_env: [PATH], env: { MINE: 1 }, command: 'echo "\${H34A_SECRET:-unset} $MINE $PIPELINE_STAGE" > "$PIPELINE_OUT/seen.txt"' } }`,
      ]);
      expect((await pipeline('run', 'p.yaml')).code).toBe(0);
      expect(readFileSync(path.join(await objectOf('open'), 'seen.txt'), 'utf8')).toBe('sk-test\n');
      expect(readFileSync(path.join(await objectOf('closed'), 'seen.txt'), 'utf8')).toBe('unset 1 closed\n');
    } finally {
      delete process.env.H34A_SECRET;
    }
  });
});

describe('an exec stage that copies its input folder', () => {
  it('publishes a whole artifact although the copy brought the input manifest.json along', async () => {
    const { pipeline, objectOf } = pipelineWith('exec-copy-input-', [
      `a: { uses: exec, with: { command: 'echo weights > "$PIPELINE_OUT/model.bin"' } }`,
      `b: { uses: exec, needs: [a], with: { command: 'cp -r "$PIPELINE_INPUT_A"/. "$PIPELINE_OUT"/ && chmod -R u+w "$PIPELINE_OUT" && echo more >> "$PIPELINE_OUT/model.bin"' } }`,
      `c: { uses: exec, needs: [b], with: { command: 'cat "$PIPELINE_INPUT_B/model.bin" > "$PIPELINE_OUT/seen.txt"' } }`,
    ]);
    const run = await pipeline('run', 'p.yaml');
    expect(run.err).not.toContain('damaged');
    expect(run.code).toBe(0);
    expect(readFileSync(path.join(await objectOf('c'), 'seen.txt'), 'utf8')).toBe('weights\nmore\n');
    expect((await pipeline('verify', 'p.yaml')).code).toBe(0);
  });
});
