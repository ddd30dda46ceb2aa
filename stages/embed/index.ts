/**
 * `uses: embed`: LREM embeddings of a dataset's catalog and queries from the judge's decoder
 * (stages/lib/retrieval/embedding.ts: mean-pooled final hidden states, L2-normalised).
 *
 *   embed:
 *     uses: embed
 *     needs: [sft, data, cot]      # a checkpoint, the dataset; cot for reason mode's CoT
 *     with: { mode: reason, train_steps: 60 }
 *
 * mode direct embeds the query text; mode reason lets the model write a short analysis of the
 * query first (greedy, up to `analysis_tokens` or the end of its line) and embeds the query
 * followed by it. The analysis it learns to write is the query step of the judge's own reasoning
 * (`query: <type>; constraints: …; intent: …`, stages/embed/train.ts). With
 * train_steps > 0 the decoder is first trained on train's Query-CoT-Item triplets with InfoNCE
 * over in-batch and hard (BM25) negatives, plus the LM loss on the CoT in reason mode
 * (stages/embed/train.ts: LREM stage 1). With `grpo` (reason mode) the analysis is then
 * refined by GRPO with a retrieval reward (stages/embed/grpo.ts: LREM stage 2). Items are always
 * embedded directly.
 *
 * Writes an 'embeddings' artifact (stages/lib/retrieval/vectors.ts) and, when it trained, the
 * trained decoder under model/.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { defineStage } from '../../pipeline/api.ts';

const params = z.strictObject({
  mode: z.enum(['direct', 'reason']).default('direct').describe('direct: embed the query; reason: the model writes an analysis of the query first and the embedding is read after it'),
  train_steps: z.number().int().min(0).default(60).describe('InfoNCE steps on train triplets before embedding (0: embed with the checkpoint as it is)'),
  batch_size: z.number().int().min(2).default(8).describe('Queries per step; every other query’s positive is an in-batch negative'),
  hard_negatives: z.number().int().min(0).default(2).describe('BM25’s best items judged not relevant, per query'),
  temperature: z.number().positive().default(0.05).describe('InfoNCE temperature τ'),
  learning_rate: z.number().positive().default(5e-4).describe('AdamW learning rate'),
  lm_weight: z.number().min(0).default(1).describe('Weight of the CoT’s next-token loss beside InfoNCE (reason mode)'),
  analysis_tokens: z.number().int().min(1).default(32).describe('Most tokens of the analysis the model writes before the embedding is read (reason mode)'),
  max_tokens: z.number().int().min(8).default(96).describe('Tokens an embedded text is cut to'),
  description_chars: z.number().int().min(0).default(200).describe('Characters of an item’s description embedded after its title'),
  batch_size_embed: z.number().int().min(1).default(32).describe('Texts per forward pass when embedding'),
  // Optional objects, absent unless set: stages that use neither keep their fingerprint (and cache).
  from: z.enum(['checkpoint', 'embeddings']).optional().describe('Where the decoder starts: the checkpoint input (the default), or the model an embeddings input (an embed stage that trained) saved: LREM stage 2 after another stage’s stage 1'),
  grpo: z
    .strictObject({
      steps: z.number().int().min(1).describe('GRPO steps on the analysis with a retrieval reward, after the InfoNCE steps'),
      queries: z.number().int().min(1).default(4).describe('Train queries per step'),
      group: z.number().int().min(2).default(4).describe('Analyses sampled per query (the GRPO group G)'),
      temperature: z.number().positive().default(1).describe('Sampling temperature of the analyses'),
      learning_rate: z.number().positive().default(1e-4).describe('AdamW learning rate'),
      reward: z.enum(['rank', 'hit']).default('rank').describe('rank: 1 / rank of the best relevant item among the whole catalog; hit: 1 when it is in the first k'),
      k: z.number().int().min(1).default(10).describe('K of the hit@K reward'),
      refresh_every: z.number().int().min(1).default(10).describe('Steps between re-embeddings of the catalog the reward searches'),
    })
    .optional()
    .describe('LREM stage 2 (reason mode): GRPO on the analysis with a retrieval reward (stages/embed/grpo.ts)'),
});

/** The decoder an embed stage trained (its model/ folder); an error naming the stage when it trained none. */
function trainedModelDir(input: { stage: string; dir: string }): string {
  const dir = path.join(input.dir, 'model');
  if (!existsSync(dir)) throw new Error(`embed: from: embeddings, but ${input.stage} saved no model (it trained nothing: train_steps 0)`);
  return dir;
}

export default defineStage({
  name: 'embed',
  version: '2',
  description: 'LREM embeddings of the catalog and the queries from the decoder: direct or reason-then-embed, optionally trained with InfoNCE.',
  params,
  produces: 'embeddings',
  resources: 'train',
  requires: (p) => [p.from === 'embeddings' ? 'embeddings' : 'checkpoint', 'dataset', ...(p.mode === 'reason' && p.train_steps > 0 ? (['sft-set'] as const) : [])],
  async run(ctx) {
    const p = ctx.params;
    const { readJsonl } = await import('../lib/io/jsonl.ts');
    const { readSplits, SPLITS } = await import('../lib/artifacts/dataset.ts');
    const { writeJson } = await import('../lib/io/json.ts');
    const { readCatalog, itemText, judgedQueries } = await import('../lib/retrieval/catalog.ts');
    const { embedIds, embedTexts, embeddingIds } = await import('../lib/retrieval/embedding.ts');
    const { writeEmbeddings } = await import('../lib/retrieval/vectors.ts');
    const { loadPolicy, releasePolicy } = await import('../lib/judge/model.ts');
    const { ANALYSIS_STOPS, analysisPrompt, buildTriplets, cotByQuery, trainEmbedder } = await import('./train.ts');

    const dataset = ctx.inputs.one('dataset');
    const splits = await readSplits(dataset.dir);
    const catalog = await readCatalog(dataset.dir, splits);
    const { policy, engine } = await loadPolicy(p.from === 'embeddings' ? trainedModelDir(ctx.inputs.one('embeddings')) : ctx.inputs.one('checkpoint').dir, ctx.engine, ctx.log);
    const { model, tokenizer } = policy;
    const metrics: Record<string, unknown> = { mode: p.mode, pooling: 'mean', items: catalog.length };

    const grpoSteps = p.grpo?.steps ?? 0;
    if (grpoSteps > 0 && p.mode !== 'reason') throw new Error('embed: grpo trains the analysis, which only mode: reason writes (set mode: reason or leave grpo out)');
    let triplets: import('./train.ts').Triplet[] = [];
    if (p.train_steps > 0 || grpoSteps > 0) {
      const cotSet = ctx.inputs.many('sft-set')[0];
      const cot = p.mode === 'reason' && cotSet ? cotByQuery(await readJsonl(path.join(cotSet.dir, 'train.jsonl'))) : new Map<string, string>();
      let withoutPositive: number;
      ({ triplets, withoutPositive } = buildTriplets(splits.train, catalog, cot, { hardNegatives: p.hard_negatives, descriptionChars: p.description_chars }));
      if (triplets.length < 2) throw new Error(`embed: ${triplets.length} train queries have a judged-relevant item; InfoNCE needs at least 2`);
      const withCot = triplets.filter((t) => t.cot !== '').length;
      ctx.log.info(`${triplets.length} train triplets (${withoutPositive} queries without a relevant item left out${p.mode === 'reason' ? `; ${withCot} with a CoT from the synthesis` : ''})`);
      Object.assign(metrics, { triplets: triplets.length, triplets_with_cot: withCot });
    }
    if (p.train_steps > 0) {
      const trained = await trainEmbedder(ctx, model, tokenizer, triplets, new Map(catalog.map((e) => [e.key, e])), {
        steps: p.train_steps,
        batchSize: Math.min(p.batch_size, triplets.length),
        temperature: p.temperature,
        learningRate: p.learning_rate,
        lmWeight: p.lm_weight,
        maxTokens: p.max_tokens,
        descriptionChars: p.description_chars,
        reason: p.mode === 'reason',
      }, ctx.rng.fork('train'));
      await policy.inference.refresh();
      Object.assign(metrics, { first_loss: trained.firstLoss, last_loss: trained.lastLoss, steps: trained.steps });
      ctx.log.info(`InfoNCE: loss ${trained.firstLoss.toFixed(4)} -> ${trained.lastLoss.toFixed(4)} over ${trained.steps} steps`);
    }
    if (p.grpo) {
      const g = p.grpo;
      const { grpoOnReasoning } = await import('./grpo.ts');
      const rowOf = new Map(catalog.map((e, i) => [e.key, i]));
      const summary = await grpoOnReasoning(ctx, policy, triplets, triplets.map((t) => t.positives.map((key) => rowOf.get(key) as number)), {
        steps: g.steps,
        queries: Math.min(g.queries, triplets.length),
        groupSize: g.group,
        temperature: g.temperature,
        learningRate: g.learning_rate,
        analysisTokens: p.analysis_tokens,
        maxTokens: p.max_tokens,
        reward: { kind: g.reward, k: g.k },
        refreshEvery: g.refresh_every,
        embedCatalog: () => embedTexts(model, tokenizer, catalog.map((e) => itemText(e.item, p.description_chars)), { batchSize: p.batch_size_embed, maxTokens: p.max_tokens, signal: ctx.signal }),
      }, ctx.rng.fork('grpo'));
      await policy.inference.refresh();
      Object.assign(metrics, { grpo_steps: summary.steps, grpo_first_reward: summary.firstReward, grpo_last_reward: summary.lastReward, grpo_flat_groups: summary.flatGroups, grpo_groups: summary.groups });
      ctx.log.info(`GRPO (${g.reward} reward): mean reward ${summary.firstReward.toFixed(4)} over the first quarter of the steps -> ${summary.lastReward.toFixed(4)} over the last; ${summary.flatGroups} of ${summary.groups} groups had no spread`);
    }
    if (p.train_steps > 0 || grpoSteps > 0) {
      const { savePolicy } = await import('../lib/judge/training.ts');
      await savePolicy(policy, path.join(ctx.outDir, 'model'), ctx.engine);
    }

    // Queries of every split (test's too, so the lead's single test run needs no re-embedding).
    const queries = SPLITS.flatMap((split) => judgedQueries(splits[split]));
    const embedOptions = { batchSize: p.batch_size_embed, maxTokens: p.max_tokens, signal: ctx.signal };
    const total = catalog.length + queries.length;
    const items = await embedTexts(model, tokenizer, catalog.map((e) => itemText(e.item, p.description_chars)), { ...embedOptions, onBatch: (done) => ctx.progress.update(done, total, 'texts') });
    let queryRows: number[][];
    let queryTexts: string[];
    if (p.mode === 'reason') {
      const { greedyTexts } = await import('../lib/judge/model.ts');
      const prompts = queries.map((q) => tokenizer.encode(analysisPrompt(q.query)));
      const generations = await greedyTexts(policy, queries.map((q) => analysisPrompt(q.query)), { maxNewTokens: p.analysis_tokens, stops: ANALYSIS_STOPS, rng: ctx.rng.fork('analysis'), signal: ctx.signal });
      queryRows = prompts.map((prompt, i) => [...prompt, ...(generations[i]?.tokens ?? [])]);
      queryTexts = queries.map((q, i) => `${analysisPrompt(q.query)}${generations[i]?.text ?? ''}`);
      metrics.mean_analysis_tokens = generations.reduce((n, g) => n + g.tokens.length, 0) / Math.max(1, generations.length);
    } else {
      queryRows = queries.map((q) => embeddingIds(tokenizer, q.query, p.max_tokens));
      queryTexts = queries.map((q) => q.query);
    }
    const queryVectors = await embedIds(model, tokenizer.padTokenId, queryRows, { ...embedOptions, onBatch: (done) => ctx.progress.update(catalog.length + done, total, 'texts') });
    await writeEmbeddings(ctx.outDir, {
      meta: { dimensions: items.dimensions, mode: p.mode, pooling: 'mean', items: items.rows, queries: queryVectors.rows },
      itemKeys: catalog.map((e) => e.key),
      items,
      queries: queries.map((q, row) => ({ queryId: q.queryId, query: q.query, row, text: queryTexts[row] as string })),
      queryVectors,
    });
    Object.assign(metrics, { queries: queries.length, dimensions: items.dimensions });
    await writeJson(path.join(ctx.outDir, 'metrics.json'), metrics);
    await releasePolicy(policy);
    return { metrics, engine };
  },
});
