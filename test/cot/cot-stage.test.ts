import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const bin = path.join(import.meta.dirname, '..', '..', 'bin', 'pipeline.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'cot-stage-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CONFIG = `name: cot-e2e
seed: 3
stages:
  world: { uses: world, with: { queries: 40, itemsPerType: 2, candidates: 4 } }
  kg: { uses: kg, needs: [world] }
  icl: { uses: icl, needs: [world, kg], with: { facts: 2, shots: 0, rules: none } }
  cot:
    uses: cot
    needs: [icl, kg]
    with:
      rounds: [{ name: plain, context: plain }, { name: kg, context: kg }, { name: rules, context: rules }]
`;

const lines = (file: string) =>
  readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('cot stage, progressive rounds through the CLI', () => {
  it('each round retries only what earlier rounds rejected, and the rules round resolves the rest', () => {
    writeFileSync(path.join(dir, 'pipeline.yaml'), CONFIG);
    execFileSync(process.execPath, [bin, 'run', 'pipeline.yaml'], { cwd: dir, encoding: 'utf8', env: { ...process.env, CI: 'true' } });
    const ref = readFileSync(path.join(dir, 'checkpoints/refs/cot-e2e/cot'), 'utf8').trim();
    const out = path.join(dir, 'checkpoints/objects', ref);
    const manifest = JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8')) as { metrics: Record<string, number> };
    const rounds = lines(path.join(out, 'rounds.jsonl')) as { split: string; round: string; asked: number; kept: number; rejected: Record<string, number> }[];

    for (const split of ['train', 'dev']) {
      const own = rounds.filter((r) => r.split === split);
      expect(own.map((r) => r.round)).toEqual(['plain', 'kg', 'rules']);
      // What a round does not keep is exactly what the next one is asked, and every reject has a reason.
      for (let k = 0; k < own.length; k++) {
        const r = own[k]!;
        expect(Object.values(r.rejected).reduce((a, b) => a + b, 0)).toBe(r.asked - r.kept);
        if (k + 1 < own.length) expect(own[k + 1]!.asked).toBe(r.asked - r.kept);
      }
      expect(own[0]!.asked).toBe(manifest.metrics[`${split}.examples`]);
      // The plain round lacks the lexicon and the business rules: it must leave work for later rounds.
      expect(own[0]!.kept).toBeLessThan(own[0]!.asked);
      expect(own[2]!.kept).toBe(own[2]!.asked);

      const kept = lines(path.join(out, `${split}.jsonl`)) as { id: string; round: string }[];
      expect(kept).toHaveLength(manifest.metrics[`${split}.examples`]!);
      expect(new Set(kept.map((r) => r.id)).size).toBe(kept.length);
      expect(manifest.metrics[`${split}.unresolved`]).toBe(0);
      expect(lines(path.join(out, `rejected-${split}.jsonl`))).toHaveLength(own[0]!.asked - own[0]!.kept + own[1]!.asked - own[1]!.kept);
    }
  });
});
