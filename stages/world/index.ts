/**
 * `uses: world`: the built-in relevance world. Generates a catalog and graded query–item pairs from
 * the knowledge files under data/ (docs/design.md §2–3), split by query.
 *
 * Writes a 'dataset' artifact: train/dev/test.jsonl, stats.json, catalog.jsonl, knowledge.json and
 * rules.json (see stages/lib/artifacts/dataset.ts), and query_log.jsonl: every query with a Zipf
 * frequency and its head/torso/tail tier (stages/lib/relevance/query-log.ts).
 */
import path from 'node:path';
import { defineStage } from '../../pipeline/api.ts';
import { knowledgeDigest } from '../lib/relevance/knowledge.ts';
import { worldParamsSchema } from '../lib/relevance/world.ts';

export default defineStage({
  name: 'world',
  // The built-in knowledge files are part of the implementation: editing data/ reruns the stage.
  version: `2+${knowledgeDigest().slice(0, 12)}`,
  description: 'Generate a seeded e-commerce catalog and graded query–item pairs from the knowledge in data/.',
  params: worldParamsSchema,
  produces: 'dataset',
  resources: 'light',
  async run(ctx) {
    const { loadKnowledge } = await import('../lib/relevance/knowledge.ts');
    const { buildKnowledgeGraph } = await import('../lib/relevance/kg.ts');
    const { generateWorld } = await import('../lib/relevance/world.ts');
    const { writeSplits, SPLITS } = await import('../lib/artifacts/dataset.ts');
    const { writeJson } = await import('../lib/io/json.ts');
    const { buildQueryLog, QUERY_LOG_FILE, QUERY_TIERS } = await import('../lib/relevance/query-log.ts');
    const { normalise } = await import('../lib/relevance/text.ts');
    const { writeJsonl } = await import('../lib/io/jsonl.ts');

    const knowledge = loadKnowledge();
    const kg = buildKnowledgeGraph(knowledge);
    ctx.log.info(`knowledge: ${knowledge.types.length} product types, ${knowledge.rules.length} rules`);
    const world = generateWorld(kg, ctx.params, ctx.rng, (done, total) => {
      ctx.progress.update(done, total, 'queries');
      if (ctx.signal.aborted) throw new Error('aborted');
    });
    await writeSplits(ctx.outDir, world.splits);
    await writeJsonl(path.join(ctx.outDir, 'catalog.jsonl'), world.catalog);
    await writeJson(path.join(ctx.outDir, 'knowledge.json'), knowledge);
    await writeJson(path.join(ctx.outDir, 'rules.json'), knowledge.rules);
    await writeJson(path.join(ctx.outDir, 'stats.json'), world.stats);
    const trainQueries = new Set(world.splits.train.map((e) => normalise(e.query)));
    const queries = [...new Map(SPLITS.flatMap((s) => world.splits[s]).map((e) => [e.query, { query: e.query, queryId: String(e.meta.queryId) }])).values()];
    const log = buildQueryLog(queries, (q) => trainQueries.has(normalise(q)), ctx.params.queryLog, ctx.rng.fork('query-log'));
    await writeJsonl(path.join(ctx.outDir, QUERY_LOG_FILE), log);
    const { stats } = world;
    const rejected = Object.values(stats.rejectedQueries).reduce((a, b) => a + b, 0);
    if (stats.queries < ctx.params.queries) ctx.log.warn(`generated ${stats.queries} of ${ctx.params.queries} queries: the intents chosen ran out of distinct phrasings`);
    ctx.log.info(`${stats.examples} examples over ${stats.queries} queries; ${rejected} generated queries did not parse back and were dropped, ${stats.duplicateQueries} duplicates`);
    ctx.metrics.log(0, { examples: stats.examples, queries: stats.queries, ...prefixed('grade', stats.grades), rejected });
    return {
      metrics: {
        examples: stats.examples,
        queries: stats.queries,
        catalog: stats.catalog,
        train: stats.bySplit.train.examples,
        dev: stats.bySplit.dev.examples,
        test: stats.bySplit.test.examples,
        grades: stats.grades,
        rejectedQueries: rejected,
        queryLog: Object.fromEntries([...QUERY_TIERS.map((t) => [t, log.filter((e) => e.tier === t).length]), ['new', log.filter((e) => e.new).length]]),
      },
    };
  },
});

function prefixed(prefix: string, record: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [`${prefix}.${k}`, v]));
}
