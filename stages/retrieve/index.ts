/**
 * `uses: retrieve`: the top K catalog items for every judged query of a split, by each method:
 *   bm25               Okapi BM25 over the items' title and description start
 *                      (stages/lib/relevance/bm25.ts)
 *   dense:<stage>      HNSW search of the query's vector from embeddings stage <stage>
 *   rrf:<stage>        reciprocal-rank fusion of bm25 and dense:<stage>, equal weights, k = rrf_k
 *   hybrid:<stage>     weighted reciprocal-rank fusion of bm25 and dense:<stage>, the dense weight
 *                      chosen among `dense_weights` (0 = BM25 alone) by mean NDCG@10 on the
 *                      `tune_split` queries' human judgements (dev; never test), whatever split is
 *                      retrieved for (stages/lib/retrieval/fusion.ts)
 *   bm25+rewrite       with a rewrites input (the rewrite stage): for a long-tail query (tier tail
 *                      in the query log, or not a train query), BM25's ranking of the query and of
 *                      each rewrite merged by reciprocal-rank fusion (BEQUE's served query); other
 *                      queries keep their BM25 ranking
 * For each dense index the exact top K is computed too, and the HNSW's recall@K against it is
 * reported (`ann_recall.<stage>`).
 *
 *   retrieve: { uses: retrieve, needs: [index, data, embed_direct, embed_reason], with: { split: dev } }
 *
 * Writes a 'retrieval' artifact: runs.jsonl ({method, queryId, query, retrieved}), retrieval.json
 * ({split, k, methods, annRecall}).
 */
import path from 'node:path';
import { z } from 'zod';
import { defineStage } from '../../pipeline/api.ts';
import { RETRIEVAL_FILE, RUNS_FILE, type RetrievalManifest, type RetrievalRun } from '../lib/artifacts/retrieval.ts';

const params = z.strictObject({
  split: z.enum(['train', 'dev', 'test']).default('dev').describe('Whose queries are retrieved for (choose settings on dev; test once at the end)'),
  k: z.number().int().min(1).default(100).describe('Items retrieved per query and method'),
  rrf_k: z.number().int().min(0).default(60).describe('k of reciprocal-rank fusion: 1/(k + rank) (Cormack et al. 2009 use 60)'),
  description_chars: z.number().int().min(0).default(200).describe('Characters of an item’s description BM25 reads after its title'),
  dense_weights: z.array(z.number().min(0).max(1)).min(1).default([0, 0.05, 0.1, 0.2, 0.3, 0.5]).describe('Candidate weights of the dense run in the hybrid (BM25 gets 1 − w); 0 keeps BM25’s ranking'),
  tune_split: z.enum(['train', 'dev']).default('dev').describe('Whose judged queries choose the hybrid’s dense weight (by mean NDCG@10); never test'),
});

export default defineStage({
  name: 'retrieve',
  version: '3',
  description: 'Retrieve the top K items per query of a split: BM25, dense (HNSW, with its recall against exact search) and hybrid (reciprocal-rank fusion).',
  params,
  produces: 'retrieval',
  resources: 'light',
  requires: () => ['index', 'dataset'],
  async run(ctx) {
    const p = ctx.params;
    const { readFile } = await import('node:fs/promises');
    const { readSplit } = await import('../lib/artifacts/dataset.ts');
    const { writeJson } = await import('../lib/io/json.ts');
    const { readJsonl, writeJsonl } = await import('../lib/io/jsonl.ts');
    const { bm25Terms, Bm25 } = await import('../lib/relevance/bm25.ts');
    const { itemText, judgedQueries } = await import('../lib/retrieval/catalog.ts');
    const { loadHnsw, recallAgainstExact, searchExact, searchHnsw } = await import('../lib/retrieval/ann.ts');
    const { chooseFusionWeight, hybridRanking, reciprocalRankFusion } = await import('../lib/retrieval/fusion.ts');
    const { meanNdcg10 } = await import('../lib/retrieval/metrics.ts');
    const { readEmbeddings } = await import('../lib/retrieval/vectors.ts');
    const { INDEX_FILE } = await import('../lib/artifacts/search-index.ts');
    type CatalogEntry = import('../lib/retrieval/catalog.ts').CatalogEntry;
    type IndexManifest = import('../lib/artifacts/search-index.ts').IndexManifest;

    const indexDir = ctx.inputs.one('index').dir;
    const manifest = JSON.parse(await readFile(path.join(indexDir, INDEX_FILE), 'utf8')) as IndexManifest;
    const catalog = await readJsonl<CatalogEntry>(path.join(indexDir, 'catalog.jsonl'));
    const queries = judgedQueries(await readSplit(ctx.inputs.one('dataset').dir, p.split));
    const tuneQueries = p.tune_split === p.split ? queries : judgedQueries(await readSplit(ctx.inputs.one('dataset').dir, p.tune_split));
    const runs: RetrievalRun[] = [];
    const bm25 = new Bm25(catalog.map((e) => bm25Terms(itemText(e.item, p.description_chars))));
    const lexicalTop = (q: { query: string }) => bm25.top(bm25Terms(q.query), p.k).map((hit) => (catalog[hit.index] as CatalogEntry).key);
    const lexical = new Map(queries.map((q) => [q.queryId, lexicalTop(q)]));
    const tuneLexical = new Map(tuneQueries.map((q) => [q.queryId, lexical.get(q.queryId) ?? lexicalTop(q)]));
    for (const q of queries) runs.push({ method: 'bm25', queryId: q.queryId, query: q.query, retrieved: lexical.get(q.queryId) as string[] });
    const methods = ['bm25'];
    const rewritesInput = ctx.inputs.many('rewrites')[0];
    let rewritten = 0;
    if (rewritesInput) {
      const { REWRITES_FILE } = await import('../lib/artifacts/rewrites.ts');
      const { mergeRewrites } = await import('../lib/retrieval/rewrite.ts');
      const { readSplit } = await import('../lib/artifacts/dataset.ts');
      const { normalise } = await import('../lib/relevance/text.ts');
      const { QUERY_LOG_FILE, readQueryLog, indexQueryLog } = await import('../lib/relevance/query-log.ts');
      const { existsSync } = await import('node:fs');
      const datasetDir = ctx.inputs.one('dataset').dir;
      const logFile = path.join(datasetDir, QUERY_LOG_FILE);
      const log = existsSync(logFile) ? indexQueryLog(await readQueryLog(logFile)) : undefined;
      const trainQueries = new Set((await readSplit(datasetDir, 'train')).map((e) => normalise(e.query)));
      const longTail = (queryId: string) => log?.get(queryId)?.tier === 'tail' || !trainQueries.has(queryId);
      const rewrites = new Map((await readJsonl<import('../lib/artifacts/rewrites.ts').QueryRewrites>(path.join(rewritesInput.dir, REWRITES_FILE))).map((r) => [r.queryId, r.rewrites]));
      for (const q of queries) {
        const own = lexical.get(q.queryId) as string[];
        const texts = longTail(q.queryId) ? (rewrites.get(q.queryId) ?? []) : [];
        if (texts.length > 0) rewritten++;
        const retrieved = texts.length === 0 ? own : mergeRewrites(own, texts.map((t) => bm25.top(bm25Terms(t), p.k).map((hit) => (catalog[hit.index] as CatalogEntry).key)), p.k);
        runs.push({ method: 'bm25+rewrite', queryId: q.queryId, query: q.query, retrieved });
      }
      methods.push('bm25+rewrite');
      ctx.log.info(`bm25+rewrite: ${rewritten} of ${queries.length} ${p.split} queries are long-tail and have rewrites`);
    }

    const annRecall: Record<string, number> = {};
    const hybrid: RetrievalManifest['hybrid'] = {};
    for (const input of ctx.inputs.many('embeddings')) {
      ctx.signal.throwIfAborted();
      const dense = manifest.dense[input.stage];
      if (!dense) throw new Error(`${input.stage}: the index input has no dense index of it (index.json names ${Object.keys(manifest.dense).join(', ') || 'none'}): put it in the index stage's needs`);
      const embeddings = await readEmbeddings(input.dir);
      const rowOf = new Map(embeddings.queries.map((q) => [q.queryId, q.row]));
      const d = embeddings.meta.dimensions;
      const queryMatrix = (split: string, list: typeof queries) => {
        const missing = list.filter((q) => !rowOf.has(q.queryId));
        if (missing.length > 0) throw new Error(`${input.stage}: no vector for ${missing.length} ${split} queries (first: "${missing[0]?.query}"): embed and retrieve must read the same dataset`);
        const data = new Float32Array(list.length * d);
        list.forEach((q, i) => {
          const at = rowOf.get(q.queryId) as number;
          data.set(embeddings.queryVectors.data.subarray(at * d, (at + 1) * d), i * d);
        });
        return { rows: list.length, dimensions: d, data };
      };
      const index = await loadHnsw(path.join(indexDir, dense.file), d, { connectivity: manifest.hnsw.connectivity, expansionAdd: manifest.hnsw.expansion_add, expansionSearch: manifest.hnsw.expansion_search });
      const approximate = searchHnsw(index, queryMatrix(p.split, queries), p.k);
      const exact = await searchExact(embeddings.items, queryMatrix(p.split, queries), p.k);
      annRecall[input.stage] = recallAgainstExact(approximate, exact, p.k);
      const keyOf = (row: number) => embeddings.itemKeys[row] as string;
      // The dense weight, chosen on the tune split's human judgements with the dense run the
      // retrieved split gets (HNSW), so the choice sees what is scored.
      const tuneDense = p.tune_split === p.split ? approximate : searchHnsw(index, queryMatrix(p.tune_split, tuneQueries), p.k);
      const tuneRanked = (weight: number) =>
        tuneQueries.map((q, i) => ({ queryId: q.queryId, query: q.query, grades: q.grades, retrieved: hybridRanking(tuneLexical.get(q.queryId) as string[], (tuneDense[i] ?? []).map((n) => keyOf(n.row)), weight, p.rrf_k) }));
      const chosen = chooseFusionWeight(p.dense_weights, (weight) => meanNdcg10(tuneRanked(weight)) ?? 0);
      hybrid[input.stage] = { denseWeight: chosen.weight, tuneSplit: p.tune_split, tuneNdcg10: chosen.figures };
      queries.forEach((q, i) => {
        const denseKeys = (approximate[i] ?? []).map((n) => keyOf(n.row));
        const lexicalKeys = lexical.get(q.queryId) as string[];
        runs.push({ method: `dense:${input.stage}`, queryId: q.queryId, query: q.query, retrieved: denseKeys });
        runs.push({ method: `rrf:${input.stage}`, queryId: q.queryId, query: q.query, retrieved: reciprocalRankFusion([lexicalKeys, denseKeys], p.rrf_k).slice(0, p.k) });
        runs.push({ method: `hybrid:${input.stage}`, queryId: q.queryId, query: q.query, retrieved: hybridRanking(lexicalKeys, denseKeys, chosen.weight, p.rrf_k).slice(0, p.k) });
      });
      methods.push(`dense:${input.stage}`, `rrf:${input.stage}`, `hybrid:${input.stage}`);
      ctx.log.info(`${input.stage}: HNSW recall@${p.k} against exact search ${annRecall[input.stage]?.toFixed(4)} over ${queries.length} ${p.split} queries`);
      ctx.log.info(`${input.stage}: hybrid dense weight ${chosen.weight} (mean NDCG@10 on ${tuneQueries.length} ${p.tune_split} queries: ${Object.entries(chosen.figures).map(([w, f]) => `${w} -> ${f.toFixed(4)}`).join(', ')})`);
    }
    await writeJsonl(path.join(ctx.outDir, RUNS_FILE), runs);
    const retrieval: RetrievalManifest = { split: p.split, k: p.k, methods, queries: queries.length, annRecall, hybrid };
    await writeJson(path.join(ctx.outDir, RETRIEVAL_FILE), retrieval);
    const metrics = { split: p.split, queries: queries.length, methods: methods.length, ...(rewritesInput ? { rewritten } : {}), ...Object.fromEntries(Object.entries(annRecall).map(([stage, r]) => [`ann_recall.${stage}`, r])), ...Object.fromEntries(Object.entries(hybrid).map(([stage, h]) => [`hybrid_dense_weight.${stage}`, h.denseWeight])) };
    ctx.metrics.log(0, metrics);
    return { metrics };
  },
});
