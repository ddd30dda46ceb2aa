/**
 * Whether the LLM-bound pairs of concurrent requests share the LLM tier's batches: starts the
 * config's deployment in this process, routes every uncached pair to the LLM (threshold above 1,
 * set live; the deployment on disk is not touched), sends single-pair test requests at 1, 4 and 16
 * at a time, and prints per run the pairs per second and the batches the tier decoded (the mean
 * batch against the deployment's max_batch).
 *
 *   npx tsx bench/serve-llm-tier.ts configs/deploy-lore.yaml [--pairs 128]
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { builtArtifacts } from '../pipeline/commands/artifacts.ts';
import { readJsonl } from '../stages/lib/io/jsonl.ts';
import type { RelevanceExample } from '../stages/lib/relevance/types.ts';
import { builtinStages } from '../stages/registry.ts';
import { startDeploymentServer } from '../stages/lib/serving/serve-command.ts';

const { values: flags, positionals } = parseArgs({ allowPositionals: true, options: { pairs: { type: 'string', default: '128' } } });
const config = positionals[0] ?? 'configs/deploy.yaml';
const artifacts = await builtArtifacts(path.basename(config), {}, { out: () => {}, err: (m) => console.error(m), cwd: path.dirname(path.resolve(config)), stages: builtinStages });
const server = await startDeploymentServer(artifacts, { host: '127.0.0.1', port: 0, bodyLimit: 1 << 20, maxItems: 64, memoEntries: 1000, logger: false });
const test = await readJsonl<RelevanceExample>(path.join(artifacts.objectDir(server.deployment.inputs.dataset), 'test.jsonl'));
server.deployment.route.minConfidence = 1.01;
server.deployment.llm.deadlineMs = 600_000; // every pair waits for the LLM: no deadline fallback
const gauge = async (name: string) => Number((await (await fetch(`${server.url}/metrics`)).text()).split('\n').find((l) => l.startsWith(`${name} `))?.split(' ')[1] ?? 0);

const pairs = test.slice(0, Number(flags.pairs));
for (const concurrency of [1, 4, 16]) {
  const [batches0, batched0] = [await gauge('lore_llm_batches'), await gauge('lore_llm_batched_pairs')];
  const tiers: Record<string, number> = {};
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < pairs.length) {
        const e = pairs[next++] as RelevanceExample;
        const response = await fetch(`${server.url}/v1/relevance`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: e.query, items: [e.item] }) });
        for (const r of ((await response.json()) as { results: { tier: string }[] }).results) tiers[r.tier] = (tiers[r.tier] ?? 0) + 1;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const batches = (await gauge('lore_llm_batches')) - batches0;
  const batched = (await gauge('lore_llm_batched_pairs')) - batched0;
  console.log(JSON.stringify({ concurrency, pairs: pairs.length, pairs_s: Number((pairs.length / seconds).toFixed(1)), llm_batches: batches, mean_batch: Number((batched / Math.max(1, batches)).toFixed(2)), max_batch: server.deployment.llm.maxBatch, tiers }));
}
await server.drain();
