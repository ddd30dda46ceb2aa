/**
 * `uses: index`: a searchable catalog. The dataset's catalog (stages/lib/retrieval/catalog.ts) as
 * catalog.jsonl, which BM25 indexes when `retrieve` opens it (building it takes milliseconds at
 * these sizes, so no lexical index file is kept), and for each embeddings input an HNSW index of
 * its item vectors (stages/lib/retrieval/ann.ts) as `<stage>.usearch`.
 *
 *   index: { uses: index, needs: [data, embed_direct, embed_reason] }
 *
 * Writes an 'index' artifact: catalog.jsonl ({key, item}), <stage>.usearch, index.json
 * ({items, dense: {stage: {dimensions, file, buildSeconds}}, hnsw}).
 */
import path from 'node:path';
import { z } from 'zod';
import { defineStage } from '../../pipeline/api.ts';
import { DEFAULT_HNSW } from '../lib/retrieval/ann.ts';
import { INDEX_FILE, type IndexManifest } from '../lib/artifacts/search-index.ts';

const { connectivity, expansionAdd, expansionSearch } = DEFAULT_HNSW;
export const hnswParams = z
  .strictObject({
    connectivity: z.number().int().min(2).default(connectivity).describe('HNSW graph degree M'),
    expansion_add: z.number().int().min(1).default(expansionAdd).describe('efConstruction: candidates kept while inserting'),
    expansion_search: z.number().int().min(1).default(expansionSearch).describe('efSearch: candidates kept while searching (bench:retrieval shows the recall it buys)'),
  })
  .default({ connectivity, expansion_add: expansionAdd, expansion_search: expansionSearch })
  .describe('HNSW settings of the dense indexes');

const params = z.strictObject({ hnsw: hnswParams });

export default defineStage({
  name: 'index',
  version: '1',
  description: 'Index a dataset’s catalog: the items for BM25, and an HNSW index of each embeddings input’s item vectors.',
  params,
  produces: 'index',
  resources: 'light',
  requires: () => ['dataset'],
  async run(ctx) {
    const { performance } = await import('node:perf_hooks');
    const { readSplits } = await import('../lib/artifacts/dataset.ts');
    const { writeJson } = await import('../lib/io/json.ts');
    const { writeJsonl } = await import('../lib/io/jsonl.ts');
    const { readCatalog } = await import('../lib/retrieval/catalog.ts');
    const { buildHnsw } = await import('../lib/retrieval/ann.ts');
    const { readEmbeddings } = await import('../lib/retrieval/vectors.ts');
    const dataset = ctx.inputs.one('dataset');
    const catalog = await readCatalog(dataset.dir, await readSplits(dataset.dir));
    await writeJsonl(path.join(ctx.outDir, 'catalog.jsonl'), catalog);
    const manifest: IndexManifest = { items: catalog.length, dense: {}, hnsw: ctx.params.hnsw };
    const embeddingInputs = ctx.inputs.many('embeddings');
    for (const [i, input] of embeddingInputs.entries()) {
      ctx.signal.throwIfAborted();
      const embeddings = await readEmbeddings(input.dir);
      const keys = catalog.map((e) => e.key);
      if (embeddings.itemKeys.length !== keys.length || embeddings.itemKeys.some((key, row) => key !== keys[row])) {
        throw new Error(`${input.stage}: its items (${embeddings.itemKeys.length}) are not this dataset's catalog (${keys.length}) in the same order: embed and index must read the same dataset`);
      }
      const start = performance.now();
      const index = await buildHnsw(embeddings.items, { connectivity: ctx.params.hnsw.connectivity, expansionAdd: ctx.params.hnsw.expansion_add, expansionSearch: ctx.params.hnsw.expansion_search });
      const buildSeconds = (performance.now() - start) / 1000;
      const file = `${input.stage}.usearch`;
      index.save(path.join(ctx.outDir, file));
      manifest.dense[input.stage] = { dimensions: embeddings.meta.dimensions, file, buildSeconds };
      ctx.progress.update(i + 1, embeddingInputs.length, 'indexes');
      ctx.log.info(`${input.stage}: HNSW over ${embeddings.items.rows} items (${embeddings.meta.dimensions}-d) in ${buildSeconds.toFixed(2)} s`);
    }
    await writeJson(path.join(ctx.outDir, INDEX_FILE), manifest);
    const metrics = { items: catalog.length, dense: Object.keys(manifest.dense).length, ...Object.fromEntries(Object.entries(manifest.dense).map(([stage, d]) => [`build_s.${stage}`, d.buildSeconds])) };
    ctx.metrics.log(0, metrics);
    return { metrics };
  },
});
