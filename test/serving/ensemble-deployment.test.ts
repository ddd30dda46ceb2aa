/**
 * Deploying what eval delivers: distill, precompute and serve take the same ensemble eval scores
 * (two untrained checkpoints here, judged as one), recorded in deployment.json with the time a batch
 * of all its members took; the served LLM tier answers as `score --ensemble` does, the console says
 * the routing, and a judge slower than its deadline is sent nothing.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtArtifacts } from '../../pipeline/commands/artifacts.ts';
import { readJsonl } from '../../stages/lib/io/jsonl.ts';
import type { RelevanceExample } from '../../stages/lib/relevance/types.ts';
import type { Deployment } from '../../stages/lib/serving/deployment.ts';
import { scorePairs } from '../../stages/lib/serving/score.ts';
import { builtinStages } from '../../stages/registry.ts';
import { routingLine } from '../../stages/lib/serving/serve-command.ts';
import { buildDeployment, deploymentConfig, type BuiltDeployment } from './deployment-fixture.ts';

const fixture = path.join(import.meta.dirname, '..', 'stages', 'eval-fixtures', 'tiny-checkpoint.ts');
const config = deploymentConfig('ens', '{ max_new_tokens: 4, ensemble: [sft, sft_b] }')
  .replace('  distill: { uses: distill, needs: [world, kg, icl, sft], with: {', `  sft_b: { uses: ${fixture}, needs: [icl], with: { answer_first: true } }\n  distill: { uses: distill, needs: [world, kg, icl, sft, sft_b], with: { ensemble: [sft, sft_b],`)
  .replace('serve: { uses: precompute, needs: [world, kg, icl, sft, distill]', 'serve: { uses: precompute, needs: [world, kg, icl, sft, sft_b, distill]')
  .concat('  slow: { uses: precompute, needs: [world, kg, icl, sft, sft_b, distill], with: { max_new_tokens: 4, ensemble: [sft, sft_b], llm_tiers: [new, tail, torso, head], deadline_ms: 0.001 } }\n');

let built: BuiltDeployment;
beforeAll(() => {
  built = buildDeployment('ens', config);
}, 400_000);
afterAll(() => built?.remove());

const deploymentOf = (stage: string) => JSON.parse(readFileSync(path.join(built.artifact(stage), 'deployment.json'), 'utf8')) as Deployment;
const fingerprintOf = (stage: string) => path.basename(built.artifact(stage));

describe('an ensemble judge deployed', () => {
  it('records the members and their batch time in deployment.json', () => {
    const deployment = deploymentOf('serve');
    expect(deployment.inputs.checkpoint).toBe(fingerprintOf('sft'));
    expect(deployment.inputs.ensemble).toEqual([fingerprintOf('sft_b')]);
    expect(deployment.llm.members).toEqual(['sft', 'sft_b']);
    expect(deployment.llm.batchSeconds).toBeGreaterThan(0);
    const distill = JSON.parse(readFileSync(path.join(built.artifact('distill'), 'manifest.json'), 'utf8')) as { params: { ensemble?: string[] } };
    expect(distill.params.ensemble).toEqual(['sft', 'sft_b']);
  });

  it('serves the ensemble: the LLM tier answers as score --ensemble does', { timeout: 180_000 }, async () => {
    const [pair] = (await readJsonl<RelevanceExample>(path.join(built.artifact('world'), 'test.jsonl'))) as [RelevanceExample];
    const server = await built.serve({ stage: 'serve' });
    try {
      server.deployment.route.minConfidence = 1.01; // every uncached pair to the LLM
      server.deployment.route.llmTiers = ['new', 'tail', 'torso', 'head'];
      server.deployment.llm.deadlineMs = 120_000;
      const response = await fetch(`${server.url}/v1/relevance`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: pair.query, items: [pair.item] }) });
      const [served] = ((await response.json()) as { results: { tier: string; grade: string; probabilities: Record<string, number> }[] }).results;
      expect(served?.tier).toBe('llm');
      writeFileSync(path.join(built.dir, 'pair.jsonl'), JSON.stringify({ id: 'p', query: pair.query, item: pair.item }));
      const io = { out: () => {}, err: () => {}, isTTY: false };
      await scorePairs(await builtArtifacts('pipeline.yaml', {}, { out: () => {}, err: () => {}, cwd: built.dir, stages: builtinStages }), { input: path.join(built.dir, 'pair.jsonl'), output: path.join(built.dir, 'scored.jsonl'), batchSize: 1, maxNewTokens: 4, model: 'sft', ensemble: ['sft_b'] }, io);
      const [scored] = await readJsonl<{ grade: string; probabilities: Record<string, number> }>(path.join(built.dir, 'scored.jsonl'));
      expect(served?.grade).toBe(scored?.grade);
      for (const [grade, p] of Object.entries(scored?.probabilities ?? {})) expect(served?.probabilities[grade]).toBeCloseTo(p, 5);
    } finally {
      await server.drain();
    }
  });

  it('sends nothing to a judge whose batch outlasts its deadline, and says the routing on the console', () => {
    const slow = deploymentOf('slow');
    expect((slow.llm.batchSeconds as number) * 1000).toBeGreaterThan(slow.llm.deadlineMs);
    expect(slow.route.tuning).not.toBeNull();
    expect(slow.route.minConfidence).toBe(0);
    expect(routingLine(slow)).toMatch(/^routing: the LLM is never asked/);
    const served = deploymentOf('serve');
    expect(routingLine({ ...served, route: { ...served.route, minConfidence: 0.5, llmTiers: ['new', 'tail'] } })).toMatch(/^routing: uncached pairs of new\+tail queries whose distilled confidence is below 0\.5000 go to the ensemble sft \+ sft_b \(chosen on \d+ dev pairs/);
  });
});
