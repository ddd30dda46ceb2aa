/**
 * `uses: rewrite`: BEQUE-style query rewrites (stages/lib/retrieval/rewrite.ts) from the
 * reason-then-embed model's analysis of each query: its query step names the product type and
 * constraints it read (`query: <type>; constraints: k=v; intent: …`), and the rewrites are
 * "<type> <constraint values>" and "<type>" (those that differ from the query).
 *
 * On train, each rewrite's BM25 retrieval is scored against the original's (offline feedback, the
 * dataset's judgements plus the learned lexical judge for unjudged items), kept by BEQUE's rejection
 * rule, and ordered into preference pairs: rewrite-sft.jsonl and rewrite-pairs.jsonl are the SFT and
 * partial-order (DPO) sets of BEQUE's rewriter. Training a rewriter on them is not built yet; the
 * rewrites served (retrieve's `bm25+rewrite`) are the analysis's, for the long-tail queries.
 *
 *   rewrite: { uses: rewrite, needs: [embed_reason, data, index] }
 *
 * Writes a 'rewrites' artifact: rewrites.jsonl ({queryId, query, rewrites}), rewrite-sft.jsonl,
 * rewrite-pairs.jsonl, feedback.jsonl.
 */
import path from 'node:path';
import { z } from 'zod';
import { defineStage } from '../../pipeline/api.ts';

const params = z.strictObject({
  k: z.number().int().min(1).default(10).describe('First K items whose relevance the rejection rule and the feedback count'),
  description_chars: z.number().int().min(0).default(200).describe('Characters of an item’s description BM25 reads after its title'),
});

export interface QueryRewrites {
  queryId: string;
  query: string;
  rewrites: string[];
}

export const REWRITES_FILE = 'rewrites.jsonl';

/** Rewrites from an analysis text: "<type> <constraint values>" and "<type>", unlike the query. */
export function rewritesFromAnalysis(query: string, analysis: string, parse: (text: string) => { product: string; constraints: Record<string, string> } | undefined, normalise: (text: string) => string): string[] {
  const line = analysis.split('\n').find((l) => l.trim().startsWith('query:'));
  const step = line ? parse(line.trim()) : undefined;
  if (!step || step.product === '') return [];
  const values = Object.values(step.constraints).filter((v) => !v.startsWith('!'));
  const candidates = [[step.product, ...values].join(' '), step.product];
  const seen = new Set([normalise(query)]);
  return candidates.filter((c) => {
    const key = normalise(c);
    if (key === '' || seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

export default defineStage({
  name: 'rewrite',
  version: '1',
  description: 'Rewrite queries from the reasoning model’s analysis; select rewrites on train by BEQUE’s rejection rule, feedback and partial order.',
  params,
  produces: 'rewrites',
  resources: 'light',
  requires: () => ['embeddings', 'dataset'],
  async run(ctx) {
    const p = ctx.params;
    const { parseCompletion } = await import('../lib/relevance/completion.ts');
    const { readSplits, writeJson } = await import('../lib/relevance/dataset.ts');
    const { writeJsonl } = await import('../lib/io/jsonl.ts');
    const { normalise } = await import('../lib/relevance/text.ts');
    const { bm25Terms, Bm25 } = await import('../lib/relevance/bm25.ts');
    const { fitLearnedBaseline } = await import('../lib/relevance/learned-baseline.ts');
    const { GRADES } = await import('../lib/relevance/types.ts');
    const { itemText, judgedQueries, readCatalog } = await import('../lib/retrieval/catalog.ts');
    const { readEmbeddings } = await import('../lib/retrieval/vectors.ts');
    const { keepRewrite, partialOrderPairs, rewriteFeedback } = await import('../lib/retrieval/rewrite.ts');

    const dataset = ctx.inputs.one('dataset');
    const splits = await readSplits(dataset.dir);
    const catalog = await readCatalog(dataset.dir, splits);
    const embeddings = await readEmbeddings(ctx.inputs.one('embeddings').dir);
    if (embeddings.meta.mode !== 'reason') throw new Error(`${ctx.inputs.one('embeddings').stage}: rewrites come from a reason-mode embed stage's analyses (this one is ${embeddings.meta.mode})`);
    const parse = (line: string) => parseCompletion(`<think>\n${line}\n</think>`).steps.query;
    const all: QueryRewrites[] = embeddings.queries.map((q) => ({ queryId: q.queryId, query: q.query, rewrites: rewritesFromAnalysis(q.query, q.text.slice(q.text.indexOf('<think>') + '<think>'.length), parse, normalise) }));
    await writeJsonl(path.join(ctx.outDir, REWRITES_FILE), all);

    // Offline feedback and rejection sampling on train.
    const bm25 = new Bm25(catalog.map((e) => bm25Terms(itemText(e.item, p.description_chars))));
    const retrieve = (text: string) => bm25.top(bm25Terms(text), p.k).map((hit) => catalog[hit.index]!.key);
    const judge = fitLearnedBaseline(splits.train);
    const items = new Map(catalog.map((e) => [e.key, e.item]));
    const rewritesOf = new Map(all.map((r) => [r.queryId, r.rewrites]));
    const feedbackLog: unknown[] = [];
    const sft: { query: string; rewrite: string }[] = [];
    const pairs: { query: string; chosen: string; rejected: string }[] = [];
    let judgeLabels = 0;
    for (const judged of judgedQueries(splits.train)) {
      const rewrites = rewritesOf.get(judged.queryId) ?? [];
      if (rewrites.length === 0) continue;
      const labels = new Map<string, number>();
      const grade = (key: string) => {
        const human = judged.grades.get(key);
        if (human) return GRADES.indexOf(human);
        if (!labels.has(key)) {
          labels.set(key, GRADES.indexOf(judge.predict({ query: judged.query, item: items.get(key)! })));
          judgeLabels++;
        }
        return labels.get(key);
      };
      const original = retrieve(judged.query);
      const feedback = rewrites.map((text) => rewriteFeedback(original, { text, retrieved: retrieve(text) }, p.k, grade));
      const kept = feedback.filter((f) => keepRewrite(original, f, p.k, grade)).map((f) => f.rewrite);
      for (const rewrite of kept) sft.push({ query: judged.query, rewrite });
      for (const pair of partialOrderPairs(feedback)) pairs.push({ query: judged.query, ...pair });
      feedbackLog.push({ queryId: judged.queryId, query: judged.query, feedback, kept });
    }
    await writeJsonl(path.join(ctx.outDir, 'feedback.jsonl'), feedbackLog);
    await writeJsonl(path.join(ctx.outDir, 'rewrite-sft.jsonl'), sft);
    await writeJsonl(path.join(ctx.outDir, 'rewrite-pairs.jsonl'), pairs);
    const metrics = {
      queries: all.length,
      queries_with_rewrites: all.filter((r) => r.rewrites.length > 0).length,
      train_queries_scored: feedbackLog.length,
      train_rewrites_kept: sft.length,
      train_preference_pairs: pairs.length,
      judge_labels: judgeLabels,
    };
    await writeJson(path.join(ctx.outDir, 'metrics.json'), metrics);
    ctx.log.info(`rewrites for ${metrics.queries_with_rewrites} of ${metrics.queries} queries; train: ${sft.length} kept by the rejection rule over ${feedbackLog.length} queries, ${pairs.length} preference pairs`);
    return { metrics };
  },
});
