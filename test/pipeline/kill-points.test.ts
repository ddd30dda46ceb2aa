// Issue 34's closing check, deterministic: `run --force` and `gc` killed (SIGKILL) at each named
// point of a delete or publish (PIPELINE_FAULT, store/fault.ts) leave a store that `pipeline
// verify` (every file re-hashed) finds whole, and a run afterwards gives the right answer.
// scripts/kill-loop.ts does the same at random moments, on a config with an SFT stage.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliBackground, inProcess, workspaces } from './cli-helpers.ts';

const workspace = workspaces();
const ROWS = 150;
const dir = workspace('pipeline-kill-points-');
writeFileSync(
  path.join(dir, 'k.yaml'),
  [
    'name: k',
    'stages:',
    `  a: { uses: exec, with: { env: { V: 1 }, command: 'for i in $(seq 1 ${ROWS}); do echo "row $i" > "$PIPELINE_OUT/f$i.txt"; done' } }`,
    `  b: { uses: exec, needs: [a], with: { command: 'cat "$PIPELINE_INPUT_A"/f*.txt | wc -l > "$PIPELINE_OUT/count.txt"' } }`,
    '',
  ].join('\n'),
);
const pipeline = inProcess(dir);
const store = path.join(dir, 'checkpoints');

/** After a kill: the full check passes, and a run (V=1) ends with b having counted every row. */
async function expectConsistent(): Promise<void> {
  const verify = await pipeline('verify', 'k.yaml');
  expect(verify.out).toMatch(/objects verified: \d+ whole, 0 damaged$/m);
  expect(verify.code).toBe(0);
  expect((await pipeline('run', 'k.yaml')).code).toBe(0);
  const status = JSON.parse((await pipeline('status', 'k.yaml', '--json')).out) as { stages: { name: string; fingerprint: string; upToDate: boolean }[] };
  expect(status.stages.map((stage) => stage.upToDate)).toEqual([true, true]);
  const b = status.stages.find((stage) => stage.name === 'b')?.fingerprint ?? '';
  expect(readFileSync(path.join(store, 'objects', b, 'count.txt'), 'utf8').trim()).toBe(String(ROWS));
  // The run emptied what the kill left in the trash.
  expect(readdirSync(path.join(store, 'trash'))).toEqual([]);
}

describe('kills at named points', () => {
  it('builds the store', async () => {
    expect((await pipeline('run', 'k.yaml')).code).toBe(0);
  });

  for (const point of ['publish:manifest-written', 'publish:old-trashed', 'trash:moved', 'trash:half-removed', 'run-record:final']) {
    it(`run --force a, killed at ${point}`, async () => {
      const killed = await cliBackground(dir, ['run', 'k.yaml', '--force', 'a'], { PIPELINE_FAULT: point }).done;
      expect(killed.code).toBe(137);
      await expectConsistent();
    });
  }

  for (const [version, point] of [[2, 'trash:moved'], [3, 'trash:half-removed']] as const) {
    it(`gc, killed at ${point}`, async () => {
      // A build under another V makes the V=1 objects garbage for gc under that V.
      expect((await pipeline('run', 'k.yaml', '--set', `stages.a.with.env.V=${version}`)).code).toBe(0);
      const killed = await cliBackground(dir, ['gc', 'k.yaml', '--set', `stages.a.with.env.V=${version}`], { PIPELINE_FAULT: point }).done;
      expect(killed.code).toBe(137);
      await expectConsistent();
    });
  }
});
