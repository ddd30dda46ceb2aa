/**
 * `uses: retrieve`: the top K catalog items for every judged query of a split, by each method:
 *   bm25               Okapi BM25 over the items' title and description start
 *                      (stages/lib/relevance/bm25.ts)
 *   dense:<stage>      HNSW search of the query's vector from embeddings stage <stage>
 *   hybrid:<stage>     reciprocal-rank fusion of bm25 and dense:<stage> (stages/lib/retrieval/fusion.ts)
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

const params = z.strictObject({
  split: z.enum(['train', 'dev', 'test']).default('dev').describe('Whose queries are retrieved for (choose settings on dev; test once at the end)'),
  k: z.number().int().min(1).default(100).describe('Items retrieved per query and method'),
  rrf_k: z.number().int().min(0).default(60).describe('k of reciprocal-rank fusion: 1/(k + rank) (Cormack et al. 2009 use 60)'),
  description_chars: z.number().int().min(0).default(200).describe('Characters of an item’s description BM25 reads after its title'),
});

export interface RetrievalRun {
  method: string;
  queryId: string;
  query: string;
  retrieved: string[];
}

export interface RetrievalManifest {
  split: string;
  k: number;
  methods: string[];
  queries: number;
  annRecall: Record<string, number>;
}

export const RETRIEVAL_FILE = 'retrieval.json';
export const RUNS_FILE = 'runs.jsonl';

export default defineStage({
  name: 'retrieve',
  version: '2',
  description: 'Retrieve the top K items per query of a split: BM25, dense (HNSW, with its recall against exact search) and hybrid (reciprocal-rank fusion).',
  params,
  produces: 'retrieval',
  resources: 'light',
  requires: () => ['index', 'dataset'],
  async run(ctx) {
    const p = ctx.params;
    const { readFile } = await import('node:fs/promises');
    const { readSplit, writeJson } = await import('../lib/relevance/dataset.ts');
    const { readJsonl, writeJsonl } = await import('../lib/relevance/jsonl.ts');
    const { bm25Terms, Bm25 } = await import('../lib/relevance/bm25.ts');
    const { itemText, judgedQueries } = await import('../lib/retrieval/catalog.ts');
    const { loadHnsw, recallAgainstExact, searchExact, searchHnsw } = await import('../lib/retrieval/ann.ts');
    const { reciprocalRankFusion } = await import('../lib/retrieval/fusion.ts');
    const { readEmbeddings } = await import('../lib/retrieval/vectors.ts');
    const { INDEX_FILE } = await import('../index/index.ts');
    type CatalogEntry = import('../lib/retrieval/catalog.ts').CatalogEntry;
    type IndexManifest = import('../index/index.ts').IndexManifest;

    const indexDir = ctx.inputs.one('index').dir;
    const manifest = JSON.parse(await readFile(path.join(indexDir, INDEX_FILE), 'utf8')) as IndexManifest;
    const catalog = await readJsonl<CatalogEntry>(path.join(indexDir, 'catalog.jsonl'));
    const queries = judgedQueries(await readSplit(ctx.inputs.one('dataset').dir, p.split));
    const runs: RetrievalRun[] = [];
    const bm25 = new Bm25(catalog.map((e) => bm25Terms(itemText(e.item, p.description_chars))));
    const lexical = new Map(queries.map((q) => [q.queryId, bm25.top(bm25Terms(q.query), p.k).map((hit) => (catalog[hit.index] as CatalogEntry).key)]));
    for (const q of queries) runs.push({ method: 'bm25', queryId: q.queryId, query: q.query, retrieved: lexical.get(q.queryId) as string[] });
    const methods = ['bm25'];
    const rewritesInput = ctx.inputs.many('rewrites')[0];
    let rewritten = 0;
    if (rewritesInput) {
      const { REWRITES_FILE } = await import('../rewrite/index.ts');
      const { mergeRewrites } = await import('../lib/retrieval/rewrite.ts');
      const { readSplit } = await import('../lib/relevance/dataset.ts');
      const { normalise } = await import('../lib/relevance/text.ts');
      const { QUERY_LOG_FILE, readQueryLog, indexQueryLog } = await import('../lib/relevance/query-log.ts');
      const { existsSync } = await import('node:fs');
      const datasetDir = ctx.inputs.one('dataset').dir;
      const logFile = path.join(datasetDir, QUERY_LOG_FILE);
      const log = existsSync(logFile) ? indexQueryLog(await readQueryLog(logFile)) : undefined;
      const trainQueries = new Set((await readSplit(datasetDir, 'train')).map((e) => normalise(e.query)));
      const longTail = (queryId: string) => log?.get(queryId)?.tier === 'tail' || !trainQueries.has(queryId);
      const rewrites = new Map((await readJsonl<import('../rewrite/index.ts').QueryRewrites>(path.join(rewritesInput.dir, REWRITES_FILE))).map((r) => [r.queryId, r.rewrites]));
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
    for (const input of ctx.inputs.many('embeddings')) {
      ctx.signal.throwIfAborted();
      const dense = manifest.dense[input.stage];
      if (!dense) throw new Error(`${input.stage}: the index input has no dense index of it (index.json names ${Object.keys(manifest.dense).join(', ') || 'none'}): put it in the index stage's needs`);
      const embeddings = await readEmbeddings(input.dir);
      const rowOf = new Map(embeddings.queries.map((q) => [q.queryId, q.row]));
      const missing = queries.filter((q) => !rowOf.has(q.queryId));
      if (missing.length > 0) throw new Error(`${input.stage}: no vector for ${missing.length} ${p.split} queries (first: "${missing[0]?.query}"): embed and retrieve must read the same dataset`);
      const d = embeddings.meta.dimensions;
      const data = new Float32Array(queries.length * d);
      queries.forEach((q, i) => data.set(embeddings.queryVectors.data.subarray((rowOf.get(q.queryId) as number) * d, ((rowOf.get(q.queryId) as number) + 1) * d), i * d));
      const queryMatrix = { rows: queries.length, dimensions: d, data };
      const index = await loadHnsw(path.join(indexDir, dense.file), d, { connectivity: manifest.hnsw.connectivity, expansionAdd: manifest.hnsw.expansion_add, expansionSearch: manifest.hnsw.expansion_search });
      const approximate = searchHnsw(index, queryMatrix, p.k);
      const exact = await searchExact(embeddings.items, queryMatrix, p.k);
      annRecall[input.stage] = recallAgainstExact(approximate, exact, p.k);
      const keyOf = (row: number) => embeddings.itemKeys[row] as string;
      queries.forEach((q, i) => {
        const denseKeys = (approximate[i] ?? []).map((n) => keyOf(n.row));
        runs.push({ method: `dense:${input.stage}`, queryId: q.queryId, query: q.query, retrieved: denseKeys });
        runs.push({ method: `hybrid:${input.stage}`, queryId: q.queryId, query: q.query, retrieved: reciprocalRankFusion([lexical.get(q.queryId) as string[], denseKeys], p.rrf_k).slice(0, p.k) });
      });
      methods.push(`dense:${input.stage}`, `hybrid:${input.stage}`);
      ctx.log.info(`${input.stage}: HNSW recall@${p.k} against exact search ${annRecall[input.stage]?.toFixed(4)} over ${queries.length} ${p.split} queries`);
    }
    await writeJsonl(path.join(ctx.outDir, RUNS_FILE), runs);
    const retrieval: RetrievalManifest = { split: p.split, k: p.k, methods, queries: queries.length, annRecall };
    await writeJson(path.join(ctx.outDir, RETRIEVAL_FILE), retrieval);
    const metrics = { split: p.split, queries: queries.length, methods: methods.length, ...(rewritesInput ? { rewritten } : {}), ...Object.fromEntries(Object.entries(annRecall).map(([stage, r]) => [`ann_recall.${stage}`, r])) };
    ctx.metrics.log(0, metrics);
    return { metrics };
  },
});
