import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadKnowledgeGraph } from '../../stages/lib/relevance/kg.ts';
import { readJsonl } from '../../stages/lib/io/jsonl.ts';
import type { PromptRecord } from '../../stages/lib/relevance/prompts.ts';

const bin = path.join(import.meta.dirname, '..', '..', 'bin', 'pipeline.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'data-pipeline-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CONFIG = `name: data-e2e
seed: 5
stages:
  world: { uses: world, with: { queries: 30, itemsPerType: 2, candidates: 4 } }
  kg: { uses: kg, needs: [world] }
  icl: { uses: icl, needs: [world, kg], with: { facts: 4, shots: 1 } }
`;

function run(...args: string[]): string {
  return execFileSync(process.execPath, [bin, 'run', 'pipeline.yaml', ...args], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The newest artifact folder of a stage, found by its manifest. */
function artifactOf(stage: string): string {
  const objects = path.join(dir, 'checkpoints', 'objects');
  const manifests = readdirSync(objects)
    .map((d) => ({ dir: path.join(objects, d), manifest: JSON.parse(readFileSync(path.join(objects, d, 'manifest.json'), 'utf8')) }))
    .filter((a) => a.manifest.stage === stage)
    .sort((a, b) => String(b.manifest.created).localeCompare(String(a.manifest.created)));
  return manifests[0]!.dir;
}

describe('world -> kg -> icl through the CLI', () => {
  it('builds, then is cached, then reruns only what a changed param touches', () => {
    writeFileSync(path.join(dir, 'pipeline.yaml'), CONFIG);
    expect(run()).toMatch(/succeeded: 3 built, 0 cached/);
    expect(run()).toMatch(/succeeded: 0 built, 3 cached/);
    expect(run('--set', 'stages.icl.with.facts=2')).toMatch(/succeeded: 1 built, 2 cached/);
  }, 120_000);

  it('writes artifacts the next stages and loadKnowledgeGraph read', async () => {
    const stats = JSON.parse(readFileSync(path.join(artifactOf('world'), 'stats.json'), 'utf8'));
    // 30 queries x 4 candidates.
    expect(stats.examples).toBe(120);
    const kg = await loadKnowledgeGraph(artifactOf('kg'));
    expect(kg.link('kicks')[0]?.name).toBe('sneakers');
    expect(kg.triples.some((t) => t.source === 'catalog')).toBe(true);
    const prompts = [...(await readJsonl<PromptRecord>(path.join(artifactOf('icl'), 'dev.jsonl'))), ...(await readJsonl<PromptRecord>(path.join(artifactOf('icl'), 'test.jsonl')))];
    const train = await readJsonl<PromptRecord>(path.join(artifactOf('icl'), 'train.jsonl'));
    expect(prompts.length + train.length).toBe(120);
    // The rerun with facts=2 is the newest icl artifact.
    for (const p of prompts) expect(p.facts.length).toBeLessThanOrEqual(2);
  });
});
