/**
 * `uses: rewrite`: BEQUE's long-tail query rewriter (Peng et al. 2024; stages/lib/retrieval/rewrite.ts
 * for the selection rules, ./train.ts for the training).
 *
 * Candidates: the reason-then-embed model's analysis of each query names the product type and
 * constraints it read (`query: <type>; constraints: k=v; intent: …`), giving "<type> <constraint
 * values>" and "<type>"; the query with one term left out is a candidate too.
 * On train, each candidate's BM25 retrieval is scored against the original's (offline feedback: the
 * dataset's judgements, plus for unjudged items the learned lexical judge fitted on train or, with
 * `judge: checkpoint`, the trained judge, as BEQUE judges with its relevance model), kept
 * by BEQUE's rejection rule (more relevant items than the original), and the candidates of a query
 * ranked into partial-order preference pairs. Then, with `sft_steps`/`dpo_steps` above 0, a decoder
 * (a `checkpoint` input, else the embed stage's trained model/) is fine-tuned on the kept rewrites
 * and aligned on the pairs, and its greedy rewrite of every query is what is served when it shares
 * a term with the query (servedRewrites); with both 0 the analysis's rewrites are served untrained.
 *
 *   rewrite: { uses: rewrite, needs: [embed_reason, data], with: { sft_steps: 120, dpo_steps: 60 } }
 *
 * Writes a 'rewrites' artifact: rewrites.jsonl ({queryId, query, rewrites, source}), rewrite-sft.jsonl,
 * rewrite-pairs.jsonl, feedback.jsonl, metrics.json, and model/ (the trained rewriter) when trained.
 * Which queries use their rewrites is the reader's rule (retrieve and /v1/search: the long tail).
 */
import path from 'node:path';
import { z } from 'zod';
import { defineStage } from '../../pipeline/api.ts';
import { REWRITES_FILE, type QueryRewrites } from '../lib/artifacts/rewrites.ts';

const params = z.strictObject({
  k: z.number().int().min(1).default(10).describe('First K items whose relevance the rejection rule and the feedback count'),
  description_chars: z.number().int().min(0).default(200).describe('Characters of an item’s description BM25 reads after its title'),
  sft_steps: z.number().int().min(0).default(120).describe('Rewriter SFT steps on the rewrites the rejection rule kept (0: no SFT)'),
  dpo_steps: z.number().int().min(0).default(60).describe('Partial-order (DPO-style) steps over the ranked candidate pairs (0: none)'),
  batch_size: z.number().int().min(1).default(16).describe('Examples (SFT) or pairs (DPO) per rewriter step'),
  learning_rate: z.number().positive().default(1e-3).describe('Peak learning rate of the rewriter (warmup then cosine decay, per phase)'),
  beta: z.number().positive().default(0.1).describe('β of the partial-order DPO term: how far the rewriter may move from the SFT model'),
  rewrite_tokens: z.number().int().min(1).default(24).describe('Most tokens the rewriter writes for one rewrite'),
  judge: z.enum(['lexical', 'checkpoint']).default('lexical').describe('Who grades retrieved items nobody judged, for the rejection rule and the feedback: the learned lexical baseline fitted on train, or the trained judge (the checkpoint input, with its kg and prompts)'),
  judge_tokens: z.number().int().positive().default(160).describe('The trained judge’s generation budget per pair (judge: checkpoint)'),
  judge_batch_size: z.number().int().positive().default(16).describe('Pairs the trained judge decodes at once (judge: checkpoint)'),
  base: z.enum(['embeddings', 'checkpoint']).default('embeddings').describe('The decoder the rewriter is trained from: the reason embed stage’s model/, or the checkpoint input'),
});


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
  version: '3',
  description: 'BEQUE query rewriter: candidates selected on train by the rejection rule, offline feedback and partial order; SFT then partial-order DPO of a decoder; its rewrites served.',
  params,
  produces: 'rewrites',
  resources: 'train',
  requires: (p) => ['embeddings', 'dataset', ...(p.judge === 'checkpoint' || p.base === 'checkpoint' ? (['checkpoint'] as const) : []), ...(p.judge === 'checkpoint' ? (['kg', 'prompts'] as const) : [])],
  async run(ctx) {
    const p = ctx.params;
    const { parseCompletion } = await import('../lib/relevance/completion.ts');
    const { readSplits } = await import('../lib/artifacts/dataset.ts');
    const { writeJson } = await import('../lib/io/json.ts');
    const { writeJsonl } = await import('../lib/io/jsonl.ts');
    const { normalise } = await import('../lib/relevance/text.ts');
    const { bm25Terms, Bm25 } = await import('../lib/relevance/bm25.ts');
    const { fitLearnedBaseline } = await import('../lib/relevance/learned-baseline.ts');
    const { GRADES } = await import('../lib/relevance/types.ts');
    const { itemText, judgedQueries, readCatalog } = await import('../lib/retrieval/catalog.ts');
    const { readEmbeddings } = await import('../lib/retrieval/vectors.ts');
    const { candidateRewrites, keepRewrite, partialOrderPairs, rewriteFeedback, servedRewrites } = await import('../lib/retrieval/rewrite.ts');
    const { QUERY_LOG_FILE } = await import('../lib/relevance/query-log.ts');
    const { existsSync } = await import('node:fs');

    const dataset = ctx.inputs.one('dataset');
    const splits = await readSplits(dataset.dir);
    const catalog = await readCatalog(dataset.dir, splits);
    const embeddingsInput = ctx.inputs.one('embeddings');
    const embeddings = await readEmbeddings(embeddingsInput.dir);
    if (embeddings.meta.mode !== 'reason') throw new Error(`${embeddingsInput.stage}: rewrites come from a reason-mode embed stage's analyses (this one is ${embeddings.meta.mode})`);
    const parse = (line: string) => parseCompletion(`<think>\n${line}\n</think>`).steps.query;
    const analysed = new Map(embeddings.queries.map((q) => [q.queryId, rewritesFromAnalysis(q.query, q.text.slice(q.text.indexOf('<think>') + '<think>'.length), parse, normalise)]));

    // Offline feedback and rejection sampling on train, over every candidate.
    const bm25 = new Bm25(catalog.map((e) => bm25Terms(itemText(e.item, p.description_chars))));
    const retrieve = (text: string) => bm25.top(bm25Terms(text), p.k).map((hit) => catalog[hit.index]!.key);
    const items = new Map(catalog.map((e) => [e.key, e.item]));
    // Each train query's ranking and its candidates' (the candidates BEQUE's rejection sampling judges).
    const scored = judgedQueries(splits.train).flatMap((judged) => {
      const rewrites = candidateRewrites(judged.query, analysed.get(judged.queryId) ?? [], normalise);
      return rewrites.length === 0 ? [] : [{ judged, original: retrieve(judged.query), candidates: rewrites.map((text) => ({ text, retrieved: retrieve(text) })) }];
    });
    // Grades of the retrieved items nobody judged: from the trained judge or the lexical baseline.
    const unjudged = new Map<string, { id: string; query: string; item: import('../lib/relevance/types.ts').Item }>();
    for (const { judged, original, candidates } of scored) {
      for (const key of [...original, ...candidates.flatMap((c) => c.retrieved)]) {
        const id = `${judged.queryId}\t${key}`;
        if (!judged.grades.has(key) && !unjudged.has(id)) unjudged.set(id, { id, query: judged.query, item: items.get(key)! });
      }
    }
    const labels = new Map<string, number | undefined>();
    if (p.judge === 'checkpoint') {
      const { labelResumably } = await import('../lib/serving/label.ts');
      ctx.log.info(`${unjudged.size} unjudged retrieved pairs for the trained judge (${ctx.inputs.one('checkpoint').stage})`);
      const labelled = await labelResumably(ctx, [...unjudged.values()], { file: path.join(ctx.workDir, 'judge-labels.jsonl'), unit: 'judge', batchSize: p.judge_batch_size, maxNewTokens: p.judge_tokens });
      for (const id of unjudged.keys()) {
        const grade = labelled.get(id)?.grade;
        labels.set(id, grade ? GRADES.indexOf(grade) : undefined); // no grade: not relevant, and counted
      }
    } else {
      const lexical = fitLearnedBaseline(splits.train);
      for (const [id, pair] of unjudged) labels.set(id, GRADES.indexOf(lexical.predict(pair)));
    }
    const judgeLabels = labels.size;
    const ungraded = [...labels.values()].filter((g) => g === undefined).length;
    const feedbackLog: unknown[] = [];
    const sft: { query: string; rewrite: string }[] = [];
    const pairs: { query: string; chosen: string; rejected: string }[] = [];
    let candidates = 0;
    for (const { judged, original, candidates: rewrites } of scored) {
      candidates += rewrites.length;
      const grade = (key: string) => {
        const human = judged.grades.get(key);
        return human ? GRADES.indexOf(human) : labels.get(`${judged.queryId}\t${key}`);
      };
      const feedback = rewrites.map((rewrite) => rewriteFeedback(original, rewrite, p.k, grade));
      const kept = feedback.filter((f) => keepRewrite(original, f, p.k, grade)).map((f) => f.rewrite);
      for (const rewrite of kept) sft.push({ query: judged.query, rewrite });
      for (const pair of partialOrderPairs(feedback)) pairs.push({ query: judged.query, ...pair });
      feedbackLog.push({ queryId: judged.queryId, query: judged.query, feedback, kept });
    }
    await writeJsonl(path.join(ctx.outDir, 'feedback.jsonl'), feedbackLog);
    await writeJsonl(path.join(ctx.outDir, 'rewrite-sft.jsonl'), sft);
    await writeJsonl(path.join(ctx.outDir, 'rewrite-pairs.jsonl'), pairs);
    ctx.log.info(`train: ${candidates} candidates over ${feedbackLog.length} queries; ${sft.length} kept by the rejection rule, ${pairs.length} partial-order pairs`);

    let all: QueryRewrites[];
    let training: Record<string, number> = {};
    let engine: import('../../pipeline/api.ts').EngineRecord | undefined;
    if (p.sft_steps + p.dpo_steps > 0) {
      if (sft.length === 0 && pairs.length === 0) throw new Error(`rewrite: nothing to train the rewriter on: no candidate of the ${feedbackLog.length} train queries retrieved more relevant items than its query, and no two were ordered by their feedback (set sft_steps and dpo_steps to 0 to serve the analysis's rewrites untrained)`);
      const base = p.base === 'checkpoint' ? ctx.inputs.one('checkpoint').dir : path.join(embeddingsInput.dir, 'model');
      if (!existsSync(path.join(base, 'config.json'))) throw new Error(`rewrite: no decoder to train in ${embeddingsInput.stage}: give it train_steps > 0 (its model/ is the base), or set base: checkpoint with a checkpoint stage in needs`);
      const { loadPolicy, releasePolicy } = await import('../lib/judge/model.ts');
      const { savePolicy } = await import('../lib/judge/training.ts');
      const { trainRewriter } = await import('./train.ts');
      const { generateRewrites } = await import('../lib/retrieval/rewrite.ts');
      const loaded = await loadPolicy(base, ctx.engine, ctx.log);
      engine = loaded.engine;
      training = await trainRewriter(ctx, loaded.policy, sft, pairs, { sftSteps: p.sft_steps, dpoSteps: p.dpo_steps, batchSize: p.batch_size, learningRate: p.learning_rate, beta: p.beta }, ctx.rng.fork('rewriter'));
      ctx.log.info(`rewriter: ${JSON.stringify(training)}`);
      const written = await generateRewrites(loaded.policy, embeddings.queries.map((q) => q.query), { maxNewTokens: p.rewrite_tokens, rng: ctx.rng.fork('generate'), signal: ctx.signal });
      all = embeddings.queries.map((q, i) => ({ queryId: q.queryId, query: q.query, rewrites: servedRewrites(q.query, [written[i] as string], normalise), source: 'rewriter' as const }));
      // Written but not served: empty, the query again, or sharing no term with it (servedRewrites).
      training.rewrites_not_served = written.filter((text, i) => text !== '' && (all[i] as QueryRewrites).rewrites.length === 0).length;
      await savePolicy(loaded.policy, path.join(ctx.outDir, 'model'), ctx.engine);
      await releasePolicy(loaded.policy);
    } else {
      all = embeddings.queries.map((q) => ({ queryId: q.queryId, query: q.query, rewrites: analysed.get(q.queryId) ?? [], source: 'analysis' as const }));
    }
    await writeJsonl(path.join(ctx.outDir, REWRITES_FILE), all);
    const metrics = {
      source: all[0]?.source ?? 'analysis',
      queries: all.length,
      queries_with_rewrites: all.filter((r) => r.rewrites.length > 0).length,
      // Without a query log every query outside train counts as long-tail where rewrites are read.
      query_log: existsSync(path.join(dataset.dir, QUERY_LOG_FILE)),
      train_queries_scored: feedbackLog.length,
      train_candidates: candidates,
      train_rewrites_kept: sft.length,
      train_preference_pairs: pairs.length,
      judge: p.judge,
      judge_labels: judgeLabels,
      judge_ungraded: ungraded,
      ...training,
    };
    await writeJson(path.join(ctx.outDir, 'metrics.json'), metrics);
    ctx.log.info(`${metrics.source} rewrites for ${metrics.queries_with_rewrites} of ${metrics.queries} queries${metrics.query_log ? '' : ' (the dataset has no query log: readers treat every non-train query as long-tail)'}`);
    return { metrics, ...(engine ? { engine } : {}) };
  },
});
