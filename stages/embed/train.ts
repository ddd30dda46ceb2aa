/**
 * LREM stage 1 for the embed stage: SFT on Query-CoT-Item triplets with InfoNCE
 * (stages/lib/retrieval/embedding.ts) over in-batch and hard negatives, plus, in reason-then-embed
 * mode, the language-model loss on the CoT so the model learns to write the analysis it will be
 * embedded after (LREM's joint objective: contrastive term + λ · next-token term).
 *
 * Triplets come from train only: a query, one of its judged-relevant items (L3/L4), its hard
 * negatives (BM25's best-scoring items judged not relevant to it), and in reason mode the CoT the
 * judge's synthesis (the cot stage) wrote for one of its relevant pairs.
 */
import { type Rng, type StageContext, yieldToEventLoop } from '../../pipeline/api.ts';
import type { Model } from '#engine';
import type { Tokenizer } from '#engine/tokenizer';
import { bm25Terms, Bm25 } from '../lib/relevance/bm25.ts';
import { normalise } from '../lib/relevance/text.ts';
import { isRelevant, type RelevanceExample } from '../lib/relevance/types.ts';
import { itemText, judgedQueries, type CatalogEntry } from '../lib/retrieval/catalog.ts';
import { relevantItems } from '../lib/retrieval/metrics.ts';

export interface Triplet {
  query: string;
  /** The analysis text (reason mode), or '' in direct mode or where the synthesis has none. */
  cot: string;
  positives: string[];
  hardNegatives: string[];
}

/** The reasoning a CoT record wrote: the text inside <think>…</think>, trimmed. */
export function thinkText(completion: string): string {
  const match = /<think>([\s\S]*?)<\/think>/.exec(completion);
  return (match?.[1] ?? '').trim();
}

/**
 * The part of a judge's reasoning that is about the query alone: its `query:` step (the product
 * type, constraints and intent it read from the query: stages/lib/relevance/completion.ts), else the whole
 * reasoning. The judge's other steps are about one item, which a query's embedding cannot know.
 */
export function queryAnalysis(completion: string): string {
  const think = thinkText(completion);
  return think.split('\n').find((line) => line.startsWith('query:'))?.trim() ?? think;
}

/** Where the model's analysis of a query ends: the end of its query step, or of its reasoning. */
export const ANALYSIS_STOPS = ['\n', '</think>'];

/** What the model reads before it writes its analysis of a query (reason-then-embed mode). */
export function analysisPrompt(query: string): string {
  return `${query}\n<think>`;
}

export function buildTriplets(
  train: readonly RelevanceExample[],
  catalog: readonly CatalogEntry[],
  cotByQuery: ReadonlyMap<string, string>,
  options: { hardNegatives: number; descriptionChars: number },
): { triplets: Triplet[]; withoutPositive: number } {
  const bm25 = new Bm25(catalog.map((e) => bm25Terms(itemText(e.item, options.descriptionChars))));
  const triplets: Triplet[] = [];
  let withoutPositive = 0;
  for (const judged of judgedQueries(train)) {
    const relevant = relevantItems(judged);
    if (relevant.size === 0) {
      withoutPositive++;
      continue;
    }
    const judgedIrrelevant = (key: string) => judged.grades.has(key) && !relevant.has(key);
    const ranked = bm25.top(bm25Terms(judged.query), 50).map((hit) => (catalog[hit.index] as CatalogEntry).key);
    // Judged non-relevant first; failing those, BM25's best items nobody judged for the query.
    const hard = [...ranked.filter(judgedIrrelevant), ...ranked.filter((key) => !judged.grades.has(key))].slice(0, options.hardNegatives);
    triplets.push({ query: judged.query, cot: cotByQuery.get(judged.queryId) ?? '', positives: [...relevant], hardNegatives: hard });
  }
  return { triplets, withoutPositive };
}

/** A query's CoT: the query step of its first relevant pair's reasoning in the synthesis, else of its first pair's. */
export function cotByQuery(records: readonly { completion: string; example: RelevanceExample }[]): Map<string, string> {
  const byQuery = new Map<string, { text: string; relevant: boolean }>();
  for (const r of records) {
    const key = normalise(r.example.query);
    const relevant = isRelevant(r.example.label);
    const known = byQuery.get(key);
    const text = queryAnalysis(r.completion);
    if (text && (!known || (relevant && !known.relevant))) byQuery.set(key, { text, relevant });
  }
  return new Map([...byQuery].map(([key, v]) => [key, v.text]));
}

export interface TrainOptions {
  steps: number;
  batchSize: number;
  temperature: number;
  learningRate: number;
  lmWeight: number;
  maxTokens: number;
  descriptionChars: number;
  reason: boolean;
}

/** Trains `model` in place; returns the loss curve's first and last values. */
export async function trainEmbedder(
  ctx: StageContext<unknown>,
  model: Model,
  tokenizer: Tokenizer,
  triplets: readonly Triplet[],
  items: ReadonlyMap<string, CatalogEntry>,
  options: TrainOptions,
  rng: Rng,
): Promise<{ firstLoss: number; lastLoss: number; steps: number }> {
  const tf = await import('@tensorflow/tfjs-core');
  const engineLib = await import('#engine');
  const { trainableModel } = await import('../lib/judge/training.ts');
  const { embeddingIds, infoNceLoss, meanPooled, padIds } = await import('../lib/retrieval/embedding.ts');
  const optimizer = new engineLib.AdamW(await trainableModel(ctx, model, null), engineLib.adamWOptionsSchema.parse({}));
  const encodeItem = (key: string) => embeddingIds(tokenizer, itemText((items.get(key) as CatalogEntry).item, options.descriptionChars), options.maxTokens);
  let order: number[] = [];
  let firstLoss = Number.NaN;
  let lastLoss = Number.NaN;
  for (let step = 0; step < options.steps; step++) {
    ctx.signal.throwIfAborted();
    if (order.length < options.batchSize) order = [...order, ...rng.shuffle(triplets.map((_, i) => i))];
    const batch = order.splice(0, options.batchSize).map((i) => triplets[i] as Triplet);
    // Query rows: the query (and its CoT); the LM loss counts the CoT's tokens only.
    const queryRows = batch.map((t) => {
      const head = tokenizer.encode(options.reason ? analysisPrompt(t.query) : t.query);
      const cot = options.reason ? [...tokenizer.encode(`${t.cot}\n`)] : [];
      const ids = [...head, ...cot].slice(0, options.maxTokens);
      return { ids, lossMask: ids.map((_, j) => (j >= head.length ? 1 : 0)) };
    });
    // Candidates: each row's positive (drawn among its relevant items), then every hard negative.
    const positives = batch.map((t) => t.positives[rng.int(t.positives.length)] as string);
    const negatives = batch.flatMap((t) => t.hardNegatives).filter((key) => !positives.includes(key));
    const candidateKeys = [...positives, ...new Set(negatives)];
    const candidates = padIds(candidateKeys.map(encodeItem), tokenizer.padTokenId);
    const queries = padIds(queryRows.map((r) => r.ids), tokenizer.padTokenId);
    const lossMask = queries.ids.map((row, b) => row.map((_, j) => (queryRows[b] as { lossMask: number[] }).lossMask[j] ?? 0));
    const hasCot = lossMask.some((row) => row.some((m) => m === 1));
    const result = await engineLib.trainStep(
      model,
      optimizer,
      [batch],
      () => {
        const q = meanPooled(tf, engineLib.hiddenStates(model, queries.ids, { attentionMask: queries.mask }), queries.mask);
        const c = meanPooled(tf, engineLib.hiddenStates(model, candidates.ids, { attentionMask: candidates.mask }), candidates.mask);
        let loss = infoNceLoss(tf, q, c, positives.map((_, i) => i), options.temperature);
        if (hasCot && options.lmWeight > 0) {
          const lm = engineLib.maskedLmLoss(model, queries.ids, lossMask, { attentionMask: queries.mask, reduction: 'mean' });
          loss = tf.add(loss, tf.mul(lm, options.lmWeight)) as typeof loss;
        }
        return { loss, weight: 1 };
      },
      { lr: options.learningRate, maxGradNorm: 1, signal: ctx.signal },
    );
    if (step === 0) firstLoss = result.loss;
    lastLoss = result.loss;
    ctx.metrics.log(step + 1, { loss: result.loss, grad_norm: result.gradNorm });
    ctx.progress.update(step + 1, options.steps, 'steps');
    await yieldToEventLoop();
  }
  optimizer.dispose();
  return { firstLoss, lastLoss, steps: options.steps };
}
