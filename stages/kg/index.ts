/**
 * `uses: kg`: the knowledge graph for a dataset. Reads the dataset's knowledge.json and
 * catalog.jsonl when the world made it; for an imported dataset, knowledge induced from its own
 * catalog (product types, brands, aliases mined from train: stages/lib/relevance/catalog-kg.ts)
 * with the built-in lexicons and ontology where they match, and the dataset's items as the catalog.
 *
 * Writes a 'kg' artifact: knowledge.json, triples.jsonl, aliases.jsonl, stats.json (see
 * stages/lib/relevance/kg.ts), and for a catalog, mined-aliases.jsonl; `loadKnowledgeGraph(dir)` reads it.
 */
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { defineStage } from '../../pipeline/api.ts';
import { knowledgeDigest } from '../lib/relevance/knowledge.ts';

const params = z.strictObject({
  catalogFacts: z.boolean().default(true).describe('Add facts the catalog shows (values a type comes in, models an accessory fits) to the knowledge-file facts.'),
  knowledge: z
    .enum(['auto', 'builtin', 'catalog'])
    .default('auto')
    .describe("auto: the dataset's own knowledge.json when it has one (the world), else induced from its catalog; builtin: the built-in knowledge files; catalog: always induced"),
  min_type_count: z.number().int().min(1).default(3).describe('Distinct titles or train queries whose head noun phrase it is, for a phrase to become a product type'),
  min_brand_count: z.number().int().min(1).default(3).describe("Distinct titles that start with a word, for it to become a brand"),
  alias_min_support: z.number().int().min(1).default(3).describe('Relevant (L3/L4) train pairs a mined alias needs'),
  alias_min_score: z
    .number()
    .min(0)
    .max(1)
    .default(0.5)
    .describe('Share of the train pairs whose title has the word that are relevant to the type, for the word to become its alias (half: more often than not)'),
});

export default defineStage({
  name: 'kg',
  // Imported datasets use the built-in knowledge, so its files are part of the implementation.
  version: `2+${knowledgeDigest().slice(0, 12)}`,
  description: 'Build the knowledge graph (triples and an entity-linking alias index) for a dataset.',
  params,
  produces: 'kg',
  resources: 'light',
  requires: () => ['dataset'],
  async run(ctx) {
    const { loadKnowledge } = await import('../lib/relevance/knowledge.ts');
    const { buildKnowledgeGraph, writeKnowledgeGraph } = await import('../lib/relevance/kg.ts');
    const { readJsonl } = await import('../lib/io/jsonl.ts');
    const { readSplits, SPLITS } = await import('../lib/artifacts/dataset.ts');
    type Knowledge = import('../lib/relevance/knowledge.ts').Knowledge;
    type Item = import('../lib/relevance/types.ts').Item;

    const { buildCatalogKnowledge } = await import('../lib/relevance/catalog-kg.ts');
    const { writeJsonl } = await import('../lib/io/jsonl.ts');
    const p = ctx.params;
    const dataset = ctx.inputs.one('dataset');
    const knowledgeFile = path.join(dataset.dir, 'knowledge.json');
    let knowledge: Knowledge;
    let catalogCounts: Record<string, number> = {};
    if (p.knowledge === 'builtin' || (p.knowledge === 'auto' && existsSync(knowledgeFile))) {
      knowledge = existsSync(knowledgeFile) && p.knowledge === 'auto' ? JSON.parse(await fs.readFile(knowledgeFile, 'utf8')) : loadKnowledge();
    } else {
      const splits = await readSplits(dataset.dir);
      const induced = buildCatalogKnowledge(loadKnowledge(), splits.train, SPLITS.flatMap((s) => splits[s]), {
        minTypeCount: p.min_type_count,
        minBrandCount: p.min_brand_count,
        aliasMinSupport: p.alias_min_support,
        aliasMinScore: p.alias_min_score,
        department: 'catalog',
      });
      knowledge = induced.knowledge;
      catalogCounts = induced.counts;
      await writeJsonl(path.join(ctx.outDir, 'mined-aliases.jsonl'), induced.mined);
      ctx.log.info(`catalog knowledge: ${JSON.stringify(induced.counts)}`);
    }
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
    const stats = { ...(await writeKnowledgeGraph(ctx.outDir, graph)), ...catalogCounts };
    ctx.log.info(`${stats.triples} triples (${stats['triples.catalog'] ?? 0} from the catalog), ${stats.aliases} aliases`);
    return { metrics: stats };
  },
});
