/**
 * Relevance data figures: how long the default world takes to generate and prompt, and the lexical
 * baseline (IDF-weighted token coverage, thresholds tuned on dev) on the world's test split and on
 * the Chorus human judgments (../shared/data/chorus, skipped when absent).
 *
 *   npx tsx bench/relevance-data.ts
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '../pipeline/rng.ts';
import { classificationMetrics } from '../stages/lib/relevance/grade-agreement.ts';
import { analyzePair } from '../stages/lib/relevance/analysis.ts';
import { lexicalBaseline } from '../stages/lib/relevance/baseline.ts';
import { importDataset, importParamsSchema } from '../stages/lib/relevance/importer.ts';
import { buildKnowledgeGraph } from '../stages/lib/relevance/kg.ts';
import { loadKnowledge } from '../stages/lib/relevance/knowledge.ts';
import { PromptBuilder, promptParamsSchema } from '../stages/lib/relevance/prompts.ts';
import type { RelevanceExample, Split } from '../stages/lib/relevance/types.ts';
import { generateWorld, worldParamsSchema } from '../stages/lib/relevance/world.ts';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

function report(name: string, splits: Record<Split, RelevanceExample[]>): void {
  const baseline = lexicalBaseline(splits.train, splits.dev);
  const m = classificationMetrics(splits.test.map((e) => ({ gold: e.label, predicted: baseline.predict(e) })));
  const t = baseline.thresholds.map((x) => x.toFixed(3)).join(', ');
  console.log(`${name}: test n=${m.count}  Acc@2 ${m.acc2.toFixed(3)}  Acc@4 ${m.acc4.toFixed(3)}  macro-F1 ${m.macroF1.toFixed(3)}  (thresholds ${t}; tuning macro-F1 ${baseline.tuningMacroF1.toFixed(3)})`);
}

const t0 = performance.now();
const knowledge = loadKnowledge();
const kg = buildKnowledgeGraph(knowledge);
const t1 = performance.now();
const world = generateWorld(kg, worldParamsSchema.parse({}), new Rng(13, 'world'));
const t2 = performance.now();
const builder = new PromptBuilder(kg, world.splits.train, promptParamsSchema.parse({}));
for (const split of ['train', 'dev', 'test'] as const) for (const e of world.splits[split]) builder.build(e);
const t3 = performance.now();
const all = [...world.splits.train, ...world.splits.dev, ...world.splits.test];
const agree = all.filter((e) => analyzePair(e.query, e.item, kg).grade === e.label).length;
console.log(`knowledge load + graph: ${(t1 - t0).toFixed(0)} ms`);
console.log(`world (default: ${world.stats.queries} queries, ${world.stats.examples} examples): ${(t2 - t1).toFixed(0)} ms; grades ${JSON.stringify(world.stats.grades)}`);
console.log(`prompts for all ${all.length} examples: ${(t3 - t2).toFixed(0)} ms (${((t3 - t2) / all.length).toFixed(2)} ms each); mean tokens ${builder.stats.meanTokens.toFixed(0)}`);
console.log(`analyzePair agrees with the gold on ${agree}/${all.length}`);
report('lexical baseline, world', world.splits);

const chorus = path.join(root, '..', 'shared', 'data', 'chorus', 'Broad_Query_Set_individual_ratings.csv');
if (existsSync(chorus)) {
  const params = importParamsSchema.parse({
    path: chorus,
    columns: { query: 'query', title: 'name', description: 'description', label: 'final_rating' },
    labels: { scale: 'rating0to3' },
    name: 'chorus',
  });
  const imported = importDataset(chorus, params, new Rng(13, 'import'));
  console.log(`chorus: ${imported.rows} rows, ${imported.skipped.length} skipped, grades ${JSON.stringify(imported.grades)}`);
  report('lexical baseline, chorus', imported.splits);
  // The rule engine as a zero-shot judge on real data: how far the built-in knowledge carries.
  const rules = classificationMetrics(imported.splits.test.map((e) => ({ gold: e.label, predicted: analyzePair(e.query, e.item, kg).grade })));
  console.log(`analyzePair (rules, built-in knowledge), chorus: test n=${rules.count}  Acc@2 ${rules.acc2.toFixed(3)}  Acc@4 ${rules.acc4.toFixed(3)}  macro-F1 ${rules.macroF1.toFixed(3)}`);
} else console.log(`chorus: ${chorus} absent, skipped`);
