/**
 * `uses: distill`: LORE's mid tier. The trained LLM judge labels a large pool of unlabelled pairs
 * (every train pair, plus `extra_per_query` catalog items per train query that nobody graded), and
 * a DeepBoW model (stages/lib/serving/deepbow.ts) learns the judge's grade distribution. The pool
 * never holds a dev or test query.
 *
 *   distill:
 *     uses: distill
 *     needs: [world, kg, icl, sft]
 *
 * The judge also labels the dev pairs, so the deployment stage can choose its routing threshold on
 * dev without running the LLM again. Teacher labels are written to the work folder a batch at a
 * time, so a stopped run resumes where it was.
 *
 * With `kg_features: true` the model also weighs what the knowledge graph says of each pair (how the
 * item's product type relates to the query's, each stated constraint met, conflicting or unknown),
 * which words alone cannot see; the server then loads the graph beside the model.
 *
 * Writes a 'distilled' artifact: model.json (readable: word weights by side, feature weights, cut points, synonyms),
 * dev.jsonl (each dev pair: gold, the judge's and the distilled model's grade and probabilities),
 * teacher.jsonl (the pool's labels).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { defineStage, type StageContext } from '../../pipeline/api.ts';
import { GRADE_READINGS } from '../lib/relevance/grade-pooling.ts';
import type { Item, RelevanceExample } from '../lib/relevance/types.ts';
import type { PairToJudge } from '../lib/serving/llm-judge.ts';
import { DISTILLED_DEV_FILE, type DevJudgement } from '../lib/artifacts/distilled.ts';

const params = z.strictObject({
  labels: z.enum(['judge', 'gold']).default('judge').describe('Learn from the checkpoint in needs (judge) or from the gold grades (gold: an upper reference, no checkpoint needed)'),
  extra_per_query: z.number().int().min(0).default(4).describe('Ungraded catalog items paired with each train query and labelled by the judge (pool beyond the train pairs)'),
  pool_limit: z.number().int().min(0).default(0).describe('Most pool pairs labelled, a seeded sample (0 = all): bounds the judge\'s labelling time'),
  dev_limit: z.number().int().min(0).default(0).describe('Most dev pairs labelled for threshold tuning, a seeded sample (0 = all)'),
  epochs: z.number().int().min(1).default(10).describe('Passes over the pool'),
  lr: z.number().positive().default(0.2).describe('Adagrad learning rate'),
  l1: z.number().min(0).default(0.001).describe('Sparsity penalty λ on every word weight'),
  min_count: z.number().int().min(1).default(2).describe('Words seen fewer times in the pool share the <unk> weight'),
  // Optional rather than defaulted: configs that leave it out keep their fingerprints (and their labelled pools).
  kg_features: z
    .union([z.boolean(), z.literal('auto')])
    .optional()
    .describe(
      "Also learn signed weights of knowledge-graph features (product-type link, each constraint met, conflicting or unknown: deepbow-kg.ts); scoring then loads the graph (default: false). It helped on the world, whose grades follow the graph's reading of a pair, and hurt on Chorus and esci-small, whose graph is induced from train. auto: train both and keep the one that agrees more often with the judge on dev (a tie keeps words only, the faster)",
    ),
  // Optional, so configs without it keep their fingerprints.
  grade: z.enum(GRADE_READINGS).optional().describe("How a think-first judge's grade is read: the answer it wrote ('answer', the default) or the median of its answer probabilities after its reasoning ('median'); set it as eval's `grade`"),
  lexical_pool: z.number().min(0).max(1).optional().describe("Pool the judge's grade probabilities with the learned lexical baseline's (fitted on train), this weight on the baseline, and read the pooled median; set it as eval's `lexical_pool`"),
  ensemble: z
    .array(z.string())
    .min(2)
    .optional()
    .describe("Judge with these checkpoint stages as one (eval's `ensemble`, the primary first; each must be in needs): the teacher the distilled model learns from"),
  batch_size: z.number().int().positive().default(8).describe('Pairs the judge decodes at once'),
  max_new_tokens: z.number().int().positive().default(160).describe("The judge's generation budget per pair"),
});
type Params = z.output<typeof params>;

type Labelled = Pick<import('../lib/serving/label.ts').LabelledPair, 'id' | 'grade' | 'probabilities'>;

/** The train pairs, then `extra` ungraded catalog items per train query (not already paired with it). */
function unlabelledPool(train: readonly RelevanceExample[], catalog: readonly Item[], extra: number, rng: StageContext<Params>['rng']): PairToJudge[] {
  const pool: PairToJudge[] = train.map((e) => ({ id: e.id, query: e.query, item: e.item }));
  const byQuery = new Map<string, Set<string>>();
  for (const e of train) byQuery.set(e.query, (byQuery.get(e.query) ?? new Set()).add(e.item.id ?? e.item.title));
  for (const [query, paired] of byQuery) {
    const candidates = catalog.filter((item) => !paired.has(item.id ?? item.title));
    rng.shuffle(candidates)
      .slice(0, extra)
      .forEach((item, k) => pool.push({ id: `${query}#extra${k}`, query, item }));
  }
  return pool;
}

function sample<T>(items: readonly T[], limit: number, rng: StageContext<Params>['rng']): T[] {
  return limit > 0 && limit < items.length ? rng.shuffle([...items]).slice(0, limit) : [...items];
}

export default defineStage({
  name: 'distill',
  version: '1',
  description: "Distil the LLM judge into a DeepBoW model (sparse word weights, KG synonym expansion) on a pool of pairs it labels",
  params,
  produces: 'distilled',
  resources: 'train',
  async run(ctx) {
    const p = ctx.params;
    const { readSplits } = await import('../lib/artifacts/dataset.ts');
    const { writeJson } = await import('../lib/io/json.ts');
    const { readJsonl, writeJsonl } = await import('../lib/io/jsonl.ts');
    const { loadKnowledgeGraph } = await import('../lib/relevance/kg.ts');
    const { classificationMetrics } = await import('../lib/relevance/grade-agreement.ts');
    const deepbow = await import('../lib/serving/deepbow.ts');
    const { labelResumably, oneHot } = await import('../lib/serving/label.ts');

    const datasetDir = ctx.inputs.one('dataset').dir;
    const splits = await readSplits(datasetDir);
    const catalogFile = path.join(datasetDir, 'catalog.jsonl');
    const catalog = existsSync(catalogFile) ? await readJsonl<Item>(catalogFile) : [];
    if (p.labels === 'judge' && p.extra_per_query > 0 && catalog.length === 0) ctx.log.warn(`${catalogFile} is missing: the pool holds the train pairs only`);
    const pool = sample(unlabelledPool(splits.train, catalog, p.labels === 'judge' ? p.extra_per_query : 0, ctx.rng.fork('pool')), p.pool_limit, ctx.rng.fork('pool-sample'));
    const dev = sample(splits.dev, p.dev_limit, ctx.rng.fork('dev-sample'));
    ctx.log.info(`pool: ${pool.length} pairs over ${new Set(pool.map((x) => x.query)).size} train queries; dev: ${dev.length} pairs`);

    const gold = new Map([...splits.train, ...splits.dev].map((e) => [e.id, e.label]));
    const teacher =
      p.labels === 'judge'
        ? await labelResumably(ctx, [...pool, ...dev], { file: path.join(ctx.workDir, 'teacher.jsonl'), unit: 'teacher', batchSize: p.batch_size, maxNewTokens: p.max_new_tokens, grade: p.grade, lexicalPool: p.lexical_pool, ensemble: p.ensemble })
        : new Map<string, Labelled>([...pool, ...dev].map((x) => [x.id, { id: x.id, grade: gold.get(x.id) ?? null, probabilities: null }]));

    const examples: import('../lib/serving/deepbow.ts').DeepBowExample[] = [];
    let unanswered = 0;
    for (const pair of pool) {
      const label = teacher.get(pair.id);
      if (!label?.grade) {
        unanswered++;
        continue;
      }
      examples.push({ query: pair.query, item: pair.item, target: label.probabilities ?? oneHot(label.grade) });
    }
    if (unanswered > 0) ctx.log.warn(`${unanswered} of ${pool.length} pool pairs got no grade from the judge: left out of training`);
    if (examples.length === 0) throw new Error('no pool pair has a grade to learn from (the judge answered none)');

    const kg = await loadKnowledgeGraph(ctx.inputs.one('kg').dir);
    const synonyms = deepbow.synonymTable(kg.aliases.values(), kg.knowledge.needs);
    type DeepBowModel = import('../lib/serving/deepbow.ts').DeepBowModel;
    const train = (withGraph: boolean, lossName: string): DeepBowModel => {
      const shuffler = ctx.rng.fork('epochs');
      return deepbow.trainDeepBow(examples, {
        epochs: p.epochs,
        lr: p.lr,
        l1: p.l1,
        minCount: p.min_count,
        synonyms,
        ...(withGraph ? { kg } : {}),
        shuffle: (xs) => shuffler.shuffle(xs),
        onEpoch: (epoch, loss) => {
          ctx.metrics.log(epoch, { [lossName]: loss });
          ctx.progress.update(epoch, p.epochs, 'epochs');
        },
      });
    };
    const judgeDev = (model: DeepBowModel): DevJudgement[] =>
      dev.map((e) => {
        const [d] = deepbow.judgeItems(model, e.query, [e.item], kg) as [import('../lib/serving/deepbow.ts').DeepBowJudgement];
        const t = teacher.get(e.id);
        return { id: e.id, query: e.query, gold: e.label, llm: { grade: t?.grade ?? null, probabilities: t?.probabilities ?? null }, distilled: { grade: d.grade, probabilities: d.probabilities, confidence: d.confidence } };
      });
    const agreementOf = (rows: readonly DevJudgement[]) => rows.filter((r) => r.llm.grade === r.distilled.grade).length / Math.max(1, rows.length);

    let model: DeepBowModel;
    let devRows: DevJudgement[];
    let choice: { dev_agreement_words: number; dev_agreement_graph: number } | undefined;
    if (p.kg_features === 'auto') {
      const words = train(false, 'loss_words');
      const graph = train(true, 'loss_graph');
      const [wordsDev, graphDev] = [judgeDev(words), judgeDev(graph)];
      choice = { dev_agreement_words: agreementOf(wordsDev), dev_agreement_graph: agreementOf(graphDev) };
      const graphWins = choice.dev_agreement_graph > choice.dev_agreement_words;
      [model, devRows] = graphWins ? [graph, graphDev] : [words, wordsDev];
      ctx.log.info(`kg_features auto: agrees with the judge on ${(choice.dev_agreement_words * 100).toFixed(1)}% of dev with words only, ${(choice.dev_agreement_graph * 100).toFixed(1)}% with graph features: ${graphWins ? 'graph features' : 'words only'} kept`);
    } else {
      model = train(p.kg_features === true, 'loss');
      devRows = judgeDev(model);
    }
    const distilledDev = classificationMetrics(devRows.map((r) => ({ gold: r.gold, predicted: r.distilled.grade })));
    const llmDev = classificationMetrics(devRows.map((r) => ({ gold: r.gold, predicted: r.llm.grade ?? undefined })));
    const agreement = agreementOf(devRows);
    const weights = (t: Record<string, number>) => Object.values(t);
    const all = [...weights(model.query), ...weights(model.item), ...weights(model.missing), ...weights(model.features ?? {})];
    const metrics = {
      pool: pool.length,
      trained_on: examples.length,
      unanswered,
      dev_pairs: devRows.length,
      dev_acc2: distilledDev.acc2,
      dev_acc4: distilledDev.acc4,
      dev_macro_f1: distilledDev.macroF1,
      dev_llm_acc2: llmDev.acc2,
      dev_llm_acc4: llmDev.acc4,
      dev_agreement_with_llm: agreement,
      words: all.length,
      features: Object.keys(model.features ?? {}).length,
      kg_features: model.features !== undefined,
      ...choice,
      zero_weights: all.filter((w) => w === 0).length / Math.max(1, all.length),
      final_loss: deepbow.distillLoss(model, examples, kg),
    };
    ctx.log.info(
      `distilled: dev Acc@2 ${metrics.dev_acc2.toFixed(4)}, Acc@4 ${metrics.dev_acc4.toFixed(4)} (judge ${metrics.dev_llm_acc2.toFixed(4)}, ${metrics.dev_llm_acc4.toFixed(4)}); agrees with the judge on ${(agreement * 100).toFixed(1)}% of dev; ${(metrics.zero_weights * 100).toFixed(1)}% of ${all.length} weights are 0`,
    );
    await writeJson(path.join(ctx.outDir, deepbow.DISTILLED_MODEL_FILE), model);
    await writeJsonl(path.join(ctx.outDir, DISTILLED_DEV_FILE), devRows);
    await writeJsonl(path.join(ctx.outDir, 'teacher.jsonl'), pool.map((x) => ({ ...teacher.get(x.id), query: x.query, item_id: x.item.id })));
    return { metrics };
  },
});
