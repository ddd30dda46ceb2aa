/**
 * distill's `kg_features: auto` through the CLI on a tiny world with gold labels (no judge needed):
 * both models are trained, and the one kept is the one whose dev grades agree more often with the
 * teacher's (here the gold grades), with the figures that chose it in the artifact's metrics.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { DevJudgement } from '../../stages/lib/artifacts/distilled.ts';
import { readJsonl } from '../../stages/lib/io/jsonl.ts';
import { inProcess, workspaces } from '../pipeline/cli-helpers.ts';

const workspace = workspaces();

describe('distill kg_features: auto', () => {
  it('keeps the model that agrees more with the teacher on dev, and says why', async () => {
    const dir = workspace('distill-auto-');
    writeFileSync(
      path.join(dir, 'pipeline.yaml'),
      `name: auto
seed: 5
store: store
stages:
  world: { uses: world, with: { queries: 40, itemsPerType: 2, candidates: 4 } }
  kg: { uses: kg, needs: [world] }
  distill: { uses: distill, needs: [world, kg], with: { labels: gold, kg_features: auto, epochs: 5 } }
`,
    );
    const run = await inProcess(dir)('run', 'pipeline.yaml');
    expect(run.code, run.err).toBe(0);
    const artifact = path.join(dir, 'store', 'objects', readFileSync(path.join(dir, 'store', 'refs', 'auto', 'distill'), 'utf8').trim());
    const metrics = (JSON.parse(readFileSync(path.join(artifact, 'manifest.json'), 'utf8')) as { metrics: Record<string, number | boolean> }).metrics;
    const graphKept = (metrics.dev_agreement_graph as number) > (metrics.dev_agreement_words as number);
    expect(metrics.kg_features).toBe(graphKept);
    expect(metrics.dev_agreement_with_llm).toBe(graphKept ? metrics.dev_agreement_graph : metrics.dev_agreement_words);
    const model = JSON.parse(readFileSync(path.join(artifact, 'model.json'), 'utf8')) as { features?: Record<string, number> };
    expect(model.features !== undefined).toBe(graphKept);
    // The dev rows written are the kept model's: their agreement is the one reported.
    const dev = await readJsonl<DevJudgement>(path.join(artifact, 'dev.jsonl'));
    expect(dev.filter((r) => r.llm.grade === r.distilled.grade).length / dev.length).toBe(metrics.dev_agreement_with_llm);
  }, 120_000);
});
