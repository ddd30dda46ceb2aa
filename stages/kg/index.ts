/**
 * `uses: kg`: the knowledge graph for a dataset. Reads the dataset's knowledge.json and
 * catalog.jsonl when the world made it; for an imported dataset, the built-in knowledge and the
 * dataset's own items as the catalog.
 *
 * Writes a 'kg' artifact: knowledge.json, triples.jsonl, aliases.jsonl, stats.json (see
 * stages/lib/relevance/kg.ts); `loadKnowledgeGraph(dir)` reads it.
 */
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { defineStage } from '../../pipeline/stage-api.ts';
import { knowledgeDigest } from '../lib/relevance/knowledge.ts';

const params = z.strictObject({
  catalogFacts: z.boolean().default(true).describe('Add facts the catalog shows (values a type comes in, models an accessory fits) to the knowledge-file facts.'),
});

export default defineStage({
  name: 'kg',
  // Imported datasets use the built-in knowledge, so its files are part of the implementation.
  version: `1+${knowledgeDigest().slice(0, 12)}`,
  description: 'Build the knowledge graph (triples and an entity-linking alias index) for a dataset.',
  params,
  produces: 'kg',
  resources: 'light',
  requires: () => ['dataset'],
  async run(ctx) {
    const { loadKnowledge } = await import('../lib/relevance/knowledge.ts');
    const { buildKnowledgeGraph, writeKnowledgeGraph } = await import('../lib/relevance/kg.ts');
    const { readJsonl } = await import('../lib/relevance/jsonl.ts');
    const { readSplits, SPLITS } = await import('../lib/relevance/dataset.ts');
    type Knowledge = import('../lib/relevance/knowledge.ts').Knowledge;
    type Item = import('../lib/relevance/types.ts').Item;

    const dataset = ctx.inputs.one('dataset');
    const knowledgeFile = path.join(dataset.dir, 'knowledge.json');
    const knowledge: Knowledge = existsSync(knowledgeFile) ? JSON.parse(await fs.readFile(knowledgeFile, 'utf8')) : loadKnowledge();
    let catalog: Item[] = [];
    if (ctx.params.catalogFacts) {
      const catalogFile = path.join(dataset.dir, 'catalog.jsonl');
      if (existsSync(catalogFile)) catalog = await readJsonl<Item>(catalogFile);
      else {
        const splits = await readSplits(dataset.dir);
        catalog = SPLITS.flatMap((s) => splits[s].map((e) => e.item));
      }
    }
    const graph = buildKnowledgeGraph(knowledge, catalog);
    const stats = await writeKnowledgeGraph(ctx.outDir, graph);
    ctx.log.info(`${stats.triples} triples (${stats['triples.catalog'] ?? 0} from the catalog), ${stats.aliases} aliases`);
    return { metrics: stats };
  },
});
