/**
 * Embeddings from the project's decoder (LREM: "Large Reasoning Embedding Models", Alibaba 2025).
 *
 * A text's embedding is the mean of the decoder's final-norm hidden states over its real tokens,
 * L2-normalised (mean pooling rather than the last token: the decoder is small and trained from
 * scratch, and one token's state of a causal model carries the whole text only after the model is
 * trained to put it there; the mean reads every position). In reason-then-embed mode the text is
 * the query followed by the analysis the model wrote about it, so the embedding is read after the
 * reasoning, as LREM's is.
 *
 * Training (LREM stage 1) pulls a query's embedding to a judged-relevant item's and away from
 * the other items of the batch and from hard negatives with InfoNCE (van den Oord et al. 2018,
 * "Representation learning with contrastive predictive coding", eq. 4; LREM's contrastive term):
 *   L = −(1/B) Σ_i log [ exp(s(q_i, d_i⁺)/τ) / Σ_{d ∈ D} exp(s(q_i, d)/τ) ],
 * s the cosine similarity, D every positive of the batch (in-batch negatives) and every hard
 * negative, τ the temperature.
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { Model } from '#engine';
import type { Tokenizer } from '#engine/tokenizer';
import type { VectorMatrix } from './ann.ts';

type Tf = typeof tf;

/** Mean of `hidden` (B, T, d) over the positions where `mask` (B, T) is 1, then L2-normalised: (B, d). */
export function meanPooled(tfjs: Tf, hidden: tf.Tensor3D, mask: number[][]): tf.Tensor2D {
  return tfjs.tidy(() => {
    const weights = tfjs.tensor3d(mask.map((row) => row.map((m) => [m])), [mask.length, mask[0]?.length ?? 0, 1]);
    const summed = tfjs.sum(tfjs.mul(hidden, weights), 1) as tf.Tensor2D;
    const counts = tfjs.maximum(tfjs.sum(weights, 1), 1);
    const mean = tfjs.div(summed, counts) as tf.Tensor2D;
    return l2Normalised(tfjs, mean);
  });
}

export function l2Normalised(tfjs: Tf, x: tf.Tensor2D): tf.Tensor2D {
  return tfjs.tidy(() => tfjs.div(x, tfjs.maximum(tfjs.norm(x, 'euclidean', 1, true), 1e-12)) as tf.Tensor2D);
}

/**
 * InfoNCE over normalised `queries` (B, d) and `candidates` (N, d): row i's positive is candidate
 * `positives[i]`; every other candidate is a negative for it. The mean over rows.
 */
export function infoNceLoss(tfjs: Tf, queries: tf.Tensor2D, candidates: tf.Tensor2D, positives: readonly number[], temperature: number): tf.Scalar {
  return tfjs.tidy(() => {
    const logits = tfjs.div(tfjs.matMul(queries, candidates, false, true), temperature) as tf.Tensor2D; // (B, N)
    const targets = tfjs.oneHot(tfjs.tensor1d(positives as number[], 'int32'), candidates.shape[0]);
    const logProbs = tfjs.logSoftmax(logits);
    return tfjs.neg(tfjs.mean(tfjs.sum(tfjs.mul(targets, logProbs), 1))) as tf.Scalar;
  });
}

/** Token ids of a text to embed: the text alone, cut to `maxTokens`. */
export function embeddingIds(tokenizer: Tokenizer, text: string, maxTokens: number): number[] {
  const ids = tokenizer.encode(text).slice(0, maxTokens);
  return ids.length > 0 ? ids : [tokenizer.eosTokenId];
}

/** Right-pads rows of ids; the mask marks the real tokens. */
export function padIds(rows: readonly number[][], padId: number): { ids: number[][]; mask: number[][] } {
  const width = Math.max(1, ...rows.map((r) => r.length));
  return {
    ids: rows.map((r) => [...r, ...new Array<number>(width - r.length).fill(padId)]),
    mask: rows.map((r) => [...r.map(() => 1), ...new Array<number>(width - r.length).fill(0)]),
  };
}

export interface EmbedOptions {
  batchSize: number;
  maxTokens: number;
  signal?: AbortSignal;
  onBatch?: (done: number) => void;
}

/** Embeddings of `texts` (no gradient), `batchSize` at a time. */
export async function embedTexts(model: Model, tokenizer: Tokenizer, texts: readonly string[], options: EmbedOptions): Promise<VectorMatrix> {
  return embedIds(model, tokenizer.padTokenId, texts.map((t) => embeddingIds(tokenizer, t, options.maxTokens)), options);
}

/** Embeddings of token-id rows (cut to `maxTokens`), `batchSize` at a time. */
export async function embedIds(model: Model, padId: number, rows: readonly number[][], options: EmbedOptions): Promise<VectorMatrix> {
  const tfjs = await import('@tensorflow/tfjs-core');
  const { hiddenStates } = await import('#engine');
  const { yieldToEventLoop } = await import('../../../pipeline/api.ts');
  const dimensions = model.config.hidden_size;
  const data = new Float32Array(rows.length * dimensions);
  for (let start = 0; start < rows.length; start += options.batchSize) {
    options.signal?.throwIfAborted();
    const batch = rows.slice(start, start + options.batchSize).map((r) => r.slice(0, options.maxTokens));
    const { ids, mask } = padIds(batch, padId);
    const pooled = tfjs.tidy(() => meanPooled(tfjs, hiddenStates(model, ids, { attentionMask: mask }), mask));
    data.set(await pooled.data(), start * dimensions);
    pooled.dispose();
    options.onBatch?.(Math.min(rows.length, start + options.batchSize));
    await yieldToEventLoop();
  }
  return { rows: rows.length, dimensions, data };
}
