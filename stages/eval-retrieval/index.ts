/**
 * `uses: eval-retrieval`: scores a retrieve stage's runs against the dataset's judgements:
 * Recall@K, NDCG@10, MRR and ASH@K with 95 % bootstrap intervals over queries
 * (stages/lib/retrieval/metrics.ts), the share of relevant items among the first K (the retrieved
 * sets' judged relevance), per method and per query-frequency slice (head/torso/tail from the
 * dataset's query log when it has one; new = not a train query).
 *
 * Retrieved items nobody judged for the query are labelled by a judge, so that ASH and recall count
 * a relevant item the human pool missed: `judge: checkpoint`, the trained judge (the checkpoint
 * input, prompted as it was trained through the kg and icl stages' artifacts:
 * stages/lib/serving/llm-judge.ts; a pair it gives no grade counts as not relevant and is counted),
 * or `judge: lexical`, the learned lexical baseline fitted on train
 * (stages/lib/relevance/learned-baseline.ts). How many labels came from the judge is reported;
 * `judge: none` counts unjudged items as not relevant (the classical pooled-qrels reading).
 *
 * Writes an 'eval' artifact: metrics.json, labels.jsonl (each judge label), report.json.
 */
import path from 'node:path';
import { z } from 'zod';
import { defineStage } from '../../pipeline/api.ts';

const params = z.strictObject({
  k: z.number().int().min(1).default(10).describe('K of Recall@K, ASH@K and the share relevant in the first K'),
  judge: z.enum(['checkpoint', 'lexical', 'none']).default('lexical').describe('Who labels retrieved items nobody judged: the trained judge (the checkpoint input, with its kg and prompts), the learned lexical judge fitted on train, or nobody (not relevant)'),
  max_new_tokens: z.number().int().positive().default(160).describe('The trained judge’s generation budget per pair (judge: checkpoint)'),
  batch_size: z.number().int().positive().default(16).describe('Pairs the trained judge decodes at once (judge: checkpoint)'),
  resamples: z.number().int().min(100).default(1000).describe('Bootstrap resamples of the queries for the 95 % intervals'),
});

export default defineStage({
  name: 'eval-retrieval',
  version: '2',
  description: 'Score retrieval runs: Recall@K, NDCG@10, MRR, ASH@K with bootstrap intervals, per method and per query-frequency slice.',
  params,
  produces: 'eval',
  resources: 'light',
  requires: (p) => ['retrieval', 'dataset', ...(p.judge === 'checkpoint' ? (['checkpoint', 'kg', 'prompts'] as const) : [])],
  async run(ctx) {
    const { existsSync } = await import('node:fs');
    const { readFile } = await import('node:fs/promises');
    const { readSplits } = await import('../lib/artifacts/dataset.ts');
    const { writeJson } = await import('../lib/io/json.ts');
    const { readJsonl, writeJsonl } = await import('../lib/io/jsonl.ts');
    const { normalise } = await import('../lib/relevance/text.ts');
    const { QUERY_LOG_FILE, readQueryLog, indexQueryLog } = await import('../lib/relevance/query-log.ts');
    const { judgedQueries } = await import('../lib/retrieval/catalog.ts');
    const { RETRIEVAL_FILE, RUNS_FILE } = await import('../lib/artifacts/retrieval.ts');
    const { REPORT_FRAGMENT_FILE } = await import('../../pipeline/api.ts');
    const { scoreRuns } = await import('./score.ts');
    const { retrievalFragment } = await import('./fragment.ts');
    type RetrievalManifest = import('../lib/artifacts/retrieval.ts').RetrievalManifest;
    type RetrievalRun = import('../lib/artifacts/retrieval.ts').RetrievalRun;
    type CatalogEntry = import('../lib/retrieval/catalog.ts').CatalogEntry;

    const p = ctx.params;
    const retrieval = ctx.inputs.one('retrieval');
    const manifest = JSON.parse(await readFile(path.join(retrieval.dir, RETRIEVAL_FILE), 'utf8')) as RetrievalManifest;
    const runs = await readJsonl<RetrievalRun>(path.join(retrieval.dir, RUNS_FILE));
    const dataset = ctx.inputs.one('dataset');
    const splits = await readSplits(dataset.dir);
    const judged = judgedQueries(splits[manifest.split as 'dev']);
    const trainQueries = new Set(splits.train.map((e) => normalise(e.query)));
    const logFile = path.join(dataset.dir, QUERY_LOG_FILE);
    const log = existsSync(logFile) ? indexQueryLog(await readQueryLog(logFile)) : undefined;
    // Items by key, to show the judge what it labels: the index's catalog.
    const indexInput = ctx.inputs.many('index')[0];
    const { readCatalog } = await import('../lib/retrieval/catalog.ts');
    const catalog: CatalogEntry[] = indexInput ? await readJsonl<CatalogEntry>(path.join(indexInput.dir, 'catalog.jsonl')) : await readCatalog(dataset.dir, splits);

    let judge: ((query: string, key: string, queryId: string) => import('../lib/relevance/types.ts').Grade | undefined) | undefined;
    let judgeName: string = p.judge;
    const items = new Map(catalog.map((e) => [e.key, e.item]));
    const itemOf = (key: string) => {
      const item = items.get(key);
      if (!item) throw new Error(`${retrieval.stage}: retrieved item "${key}" is not in the catalog`);
      return item;
    };
    if (p.judge === 'checkpoint') {
      // Every unjudged pair labelled up front (the judge decodes in batches), resumably.
      const { labelResumably } = await import('../lib/serving/label.ts');
      const { pairId, unjudgedPairs } = await import('./score.ts');
      const pairs = unjudgedPairs(runs, judged, p.k).map((pair) => ({ id: pairId(pair.queryId, pair.item), query: pair.query, item: itemOf(pair.item) }));
      ctx.log.info(`${pairs.length} unjudged retrieved pairs for the trained judge (${ctx.inputs.one('checkpoint').stage})`);
      const labelled = await labelResumably(ctx, pairs, { file: path.join(ctx.workDir, 'judge-labels.jsonl'), unit: 'judge', batchSize: p.batch_size, maxNewTokens: p.max_new_tokens });
      const byId = new Map(pairs.map((pair) => [pair.id, pair]));
      judgeName = `trained (${ctx.inputs.one('checkpoint').stage})`;
      const noGrade = [...byId.keys()].filter((id) => (labelled.get(id)?.grade ?? null) === null).length;
      if (noGrade > 0) ctx.log.warn(`the trained judge gave no grade for ${noGrade} of ${pairs.length} pairs (no answer, or the prompt did not fit): they count as not relevant`);
      judge = (_query, key, queryId) => labelled.get(pairId(queryId, key))?.grade ?? undefined;
    }
    if (p.judge === 'lexical') {
      const { fitLearnedBaseline } = await import('../lib/relevance/learned-baseline.ts');
      const model = fitLearnedBaseline(splits.train);
      judgeName = 'learned lexical';
      judge = (query, key) => model.predict({ query, item: itemOf(key) });
    }
    const scored = scoreRuns({
      runs,
      judged,
      k: p.k,
      judge,
      slicesOf: (queryId) => {
        const entry = log?.get(queryId);
        return { tier: entry?.tier, new: !trainQueries.has(queryId) };
      },
      random: (method) => {
        const rng = ctx.rng.fork(method);
        return () => rng.next();
      },
      resamples: p.resamples,
      onMethod: (done, total) => ctx.progress.update(done, total, 'methods'),
    });
    const metrics = {
      split: manifest.split,
      k: p.k,
      retrievedK: manifest.k,
      queries: judged.length,
      judge: p.judge,
      judgeLabels: scored.labels.length,
      judgeUnlabelled: scored.unlabelled,
      judgeName,
      annRecall: manifest.annRecall,
      hybrid: manifest.hybrid,
      hasQueryLog: log !== undefined,
      methods: scored.methods,
      slices: scored.slices,
    };
    await writeJson(path.join(ctx.outDir, 'metrics.json'), metrics);
    await writeJsonl(path.join(ctx.outDir, 'labels.jsonl'), scored.labels);
    await writeJson(path.join(ctx.outDir, REPORT_FRAGMENT_FILE), retrievalFragment(metrics));
    for (const [method, figures] of Object.entries(scored.methods)) ctx.log.info(`${method}: Recall@${p.k} ${figures.recall?.toFixed(3)} NDCG@10 ${figures.ndcg10?.toFixed(3)} MRR ${figures.mrr?.toFixed(3)} ASH@${p.k} ${figures.ash?.toFixed(3)}`);
    const summary: Record<string, unknown> = { split: manifest.split, queries: judged.length, judgeLabels: scored.labels.length };
    for (const [method, figures] of Object.entries(scored.methods)) for (const name of ['recall', 'ndcg10', 'mrr', 'ash'] as const) summary[`${method}.${name}`] = figures[name];
    return { metrics: summary };
  },
});
