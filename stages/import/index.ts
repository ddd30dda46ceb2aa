/**
 * `uses: import`: external relevance judgments (CSV, TSV, JSONL) as a dataset, with a column
 * mapping, a label scale mapped into L1–L4, an encoding and a seeded split by query (`split_seed`, else
 * the pipeline seed).
 *
 * Writes a 'dataset' artifact: train/dev/test.jsonl, stats.json, skipped.jsonl (each unreadable row's
 * line and reason), conflicts.jsonl (each query–item pair that rows label differently, with their
 * lines and labels). See stages/lib/relevance/importer.ts.
 */
import path from 'node:path';
import { defineStage, Rng } from '../../pipeline/api.ts';
import { importParamsSchema } from '../lib/relevance/importer.ts';
import { importQueryLogSchema } from '../lib/relevance/query-log.ts';

export default defineStage({
  name: 'import',
  version: '1',
  description: 'Import a CSV/TSV/JSONL of query–product judgments into train/dev/test, mapping labels into L1–L4.',
  params: importParamsSchema.extend({ query_log: importQueryLogSchema }),
  produces: 'dataset',
  resources: 'light',
  userFiles: (params) => [params.path, ...(params.query_log?.path ? [params.query_log.path] : [])],
  async run(ctx) {
    const { importDataset } = await import('../lib/relevance/importer.ts');
    const { writeSplits } = await import('../lib/artifacts/dataset.ts');
    const { writeJson } = await import('../lib/io/json.ts');
    const { writeJsonl } = await import('../lib/io/jsonl.ts');
    const file = path.resolve(ctx.configDir, ctx.params.path);
    // With split_seed, the same stream the pipeline seed would give (seed, stage name): split_seed
    // equal to the pipeline seed splits exactly as leaving it out does.
    const splitRng = ctx.params.split_seed === undefined ? ctx.rng : new Rng(ctx.params.split_seed, ctx.stage);
    const result = importDataset(file, ctx.params, splitRng);
    await writeSplits(ctx.outDir, result.splits);
    await writeJsonl(path.join(ctx.outDir, 'skipped.jsonl'), result.skipped);
    await writeJsonl(path.join(ctx.outDir, 'conflicts.jsonl'), result.conflicts);
    const stats = {
      rows: result.rows,
      examples: result.rows - result.skipped.length,
      skipped: result.skipped.length,
      conflicting_pairs: result.conflicts.length,
      conflicting_rows: result.conflicts.reduce((sum, conflict) => sum + conflict.lines.length, 0),
      grades: result.grades,
      bySplit: Object.fromEntries(Object.entries(result.splits).map(([s, list]) => [s, list.length])),
    };
    await writeJson(path.join(ctx.outDir, 'stats.json'), stats);
    if (result.skipped.length > 0) {
      const lines = result.skipped.slice(0, 10).map((s) => `${s.line} (${s.reason})`);
      ctx.log.warn(`skipped ${result.skipped.length} of ${result.rows} rows; lines ${lines.join(', ')}${result.skipped.length > 10 ? ', ...' : ''}; all in skipped.jsonl`);
    }
    if (result.conflicts.length > 0) {
      const first = result.conflicts[0] as (typeof result.conflicts)[number];
      ctx.log.warn(
        `${stats.conflicting_pairs} query–item pairs are labelled differently by different rows (${stats.conflicting_rows} rows, all kept); first: "${first.query}" / "${first.title}" on lines ${first.lines.join(', ')} as ${first.labels.join(', ')}; all in conflicts.jsonl`,
      );
    }
    ctx.log.info(`${stats.examples} examples: ${JSON.stringify(result.grades)}`);
    if (ctx.params.query_log) await writeImportedQueryLog(ctx.params.query_log, file, result.splits.train, ctx);
    return { metrics: stats };
  },
});

/** query_log.jsonl from a frequency column or a separate log; unreadable rows are listed in query_log_skipped.jsonl. */
async function writeImportedQueryLog(
  options: import('../lib/relevance/query-log.ts').ImportQueryLog,
  importedFile: string,
  train: readonly { query: string }[],
  ctx: { outDir: string; configDir: string; log: { warn(m: string): void; info(m: string): void } },
): Promise<void> {
  const { readFrequencies, importedQueryLog, QUERY_LOG_FILE } = await import('../lib/relevance/query-log.ts');
  const { normalise } = await import('../lib/relevance/text.ts');
  const { writeJsonl } = await import('../lib/io/jsonl.ts');
  const file = options.path ? path.resolve(ctx.configDir, options.path) : importedFile;
  const { frequencies, skipped } = await readFrequencies(file, options);
  const log = importedQueryLog(frequencies, new Set(train.map((e) => normalise(e.query))), options);
  await writeJsonl(path.join(ctx.outDir, QUERY_LOG_FILE), log);
  await writeJsonl(path.join(ctx.outDir, 'query_log_skipped.jsonl'), skipped);
  if (skipped.length > 0) ctx.log.warn(`query log: skipped ${skipped.length} rows without a query or frequency (lines ${skipped.slice(0, 10).map((s) => s.line).join(', ')}${skipped.length > 10 ? ', ...' : ''}); all in query_log_skipped.jsonl`);
  ctx.log.info(`query log: ${log.length} queries, ${log.filter((e) => e.tier === 'head').length} in the head`);
}
