/**
 * Batched generation with a KV cache. Prompts are left-padded so every row's next token sits in
 * the last column; positions follow the padding mask (as HF generate), so a row's tokens do not
 * depend on what it was batched with.
 */
import * as tf from '@tensorflow/tfjs-core';
import { positionsFromMask } from '../model/layers.ts';
import type { RandomSource } from '../host.ts';
import { decode, type LayerCache, type Model } from '../model/model.ts';
import { logSoftmaxAt, penalizeRepetition, sampleToken, type SamplingOptions } from './sampling.ts';

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /**
   * generation_config.json's repetition_penalty (see `penalizeRepetition`): applied to each row's
   * prompt and completion ids before sampling or argmax, as transformers' generate() does. 1 or
   * absent: off. `Generation.logprobs` stay the model's own.
   */
  repetitionPenalty?: number;
  /** Any of these ends a row (the token is kept in `tokens`). */
  eosTokenIds: number[];
  /** Ends a row once its decoded completion contains one of `strings` (the token is kept). */
  stop?: { strings: string[]; decode: (ids: number[]) => string };
  /** Turns completion ids into text for `Generation.text`; defaults to `stop.decode` when given. */
  decode?: (ids: number[]) => string;
  rng: RandomSource;
  signal?: AbortSignal;
  /**
   * Called with each token a running row chooses (after the end-of-turn and stop checks), its
   * tokens so far included: what a streaming server sends on as it is generated. A reason returned
   * ends the row there, so rows of one batch can stop on their own terms (their own token budget,
   * stop sequences, a client that went away) without holding back the others.
   */
  onToken?: (row: number, tokens: readonly number[]) => Generation['finishReason'] | undefined;
  /** Awaited after every decoding step: a caller that must hear of a cancellation mid-batch yields here. */
  afterStep?: () => Promise<void>;
}

export interface Generation {
  tokens: number[];
  /** log p(token) under the model's own distribution (temperature 1, no top-k/top-p), per token. */
  logprobs: number[];
  finishReason: 'eos' | 'stop' | 'length';
  /** The decoded completion (including a stop string that ended it), when a decode function was given. */
  text?: string;
}

/**
 * A model as the generation loop sees it, whatever runs it (tfjs here, ONNX Runtime in onnx/):
 * `step` feeds new tokens (B, T) at their positions, attending to everything fed before except
 * where `keyMask` (B, Tk) is 0, and returns the logits of each row's last token, (B, V) flattened.
 */
export interface StepDecoder {
  vocabSize: number;
  maxPositions: number;
  step(ids: number[][], positions: number[][], keyMask: number[][]): Promise<Float32Array>;
  /** Frees the cache; the decoder is not used again. */
  release(): void;
}

/** Generates a completion for every prompt (token ids; each non-empty). */
export async function generate(model: Model, prompts: number[][], options: GenerateOptions): Promise<Generation[]> {
  return generateWith(tfjsDecoder(model), prompts, options);
}

/** The generation loop (padding, sampling, stopping) over any `StepDecoder`; releases it at the end. */
export async function generateWith(decoder: StepDecoder, prompts: number[][], options: GenerateOptions): Promise<Generation[]> {
  try {
    return await generateLoop(decoder, prompts, options);
  } finally {
    decoder.release();
  }
}

async function generateLoop(decoder: StepDecoder, prompts: number[][], options: GenerateOptions): Promise<Generation[]> {
  if (prompts.length === 0) return [];
  if (prompts.some((p) => p.length === 0)) throw new Error('generate: every prompt needs at least one token');
  const width = Math.max(...prompts.map((p) => p.length));
  const limit = decoder.maxPositions;
  if (width + options.maxNewTokens > limit) {
    throw new Error(`generate: longest prompt ${width} + maxNewTokens ${options.maxNewTokens} exceeds max_position_embeddings ${limit}`);
  }
  const padded = prompts.map((p) => [...new Array<number>(width - p.length).fill(0), ...p]);
  const mask = prompts.map((p) => [...new Array<number>(width - p.length).fill(0), ...new Array<number>(p.length).fill(1)]);
  const results: Generation[] = prompts.map(() => ({ tokens: [], logprobs: [], finishReason: 'length' }));
  const done = prompts.map(() => false);
  const nextPositions = prompts.map((p) => p.length);
  const vocab = decoder.vocabSize;
  const penalty = options.repetitionPenalty ?? 1;
  if (!(penalty > 0)) throw new Error(`generate: repetitionPenalty must be positive, got ${penalty}`);
  // Each row's ids so far (prompt, then what it chose), only when a penalty reads them.
  const seen = penalty === 1 ? [] : prompts.map((p) => new Set(p));

  let logits = await decoder.step(padded, positionsFromMask(mask), mask); // (B, V) flattened
  for (let t = 0; t < options.maxNewTokens; t++) {
    if (options.signal?.aborted) throw new Error('generate: aborted');
    const chosen: number[] = [];
    for (let b = 0; b < prompts.length; b++) {
      const row = logits.subarray(b * vocab, (b + 1) * vocab);
      if (done[b]) {
        chosen.push(0);
        continue;
      }
      const token = sampleToken(penalty === 1 ? row : penalizeRepetition(row, seen[b] as Set<number>, penalty), options, options.rng);
      chosen.push(token);
      (seen[b] as Set<number> | undefined)?.add(token);
      const result = results[b] as Generation;
      result.tokens.push(token);
      result.logprobs.push(logSoftmaxAt(row, token));
      if (options.eosTokenIds.includes(token)) finish(b, 'eos');
      else if (options.stop && options.stop.strings.length > 0) {
        const text = options.stop.decode(result.tokens);
        if (options.stop.strings.some((s) => text.includes(s))) finish(b, 'stop');
      }
      if (!done[b] && options.onToken) {
        const ended = options.onToken(b, result.tokens);
        if (ended) finish(b, ended);
      }
    }
    if (options.afterStep) await options.afterStep();
    if (done.every(Boolean) || t === options.maxNewTokens - 1) break;
    // Finished rows keep decoding a dummy token (masked out of nobody's attention but their own).
    for (const row of mask) row.push(1);
    const positions = nextPositions.map((p) => [p]);
    for (let b = 0; b < nextPositions.length; b++) nextPositions[b] = (nextPositions[b] as number) + 1;
    logits = await decoder.step(chosen.map((id) => [id]), positions, mask);
  }
  const decodeText = options.decode ?? options.stop?.decode;
  if (decodeText) for (const result of results) result.text = decodeText(result.tokens);
  return results;

  function finish(b: number, reason: Generation['finishReason']): void {
    done[b] = true;
    (results[b] as Generation).finishReason = reason;
  }
}

/** The tfjs model as a `StepDecoder`: its KV cache lives in tensors between steps. */
function tfjsDecoder(model: Model): StepDecoder {
  let current: StepOutput | undefined;
  return {
    vocabSize: model.config.vocab_size,
    maxPositions: model.config.max_position_embeddings,
    async step(ids, positions, keyMask) {
      const previous = current;
      current = runStep(model, ids, positions, keyMask, previous?.cache);
      if (previous) disposeStep(previous);
      return (await current.logits.data()) as Float32Array;
    },
    release() {
      if (current) disposeStep(current);
      current = undefined;
    },
  };
}

interface StepOutput {
  /** (B, V) logits of each row's last token. */
  logits: tf.Tensor2D;
  cache: LayerCache[];
}

function runStep(model: Model, ids: number[][], positions: number[][], keyMask: number[][], cache: LayerCache[] | undefined): StepOutput {
  return tf.tidy(() => {
    const batch = ids.length;
    const steps = ids[0]?.length ?? 0;
    const { hidden, cache: next, lmHead } = decode(model, ids, positions, keyMask, cache, { frozen: true }); // (B*T, d)
    const last = tf.reshape(tf.slice(tf.reshape(hidden, [batch, steps, -1]), [0, steps - 1, 0], [batch, 1, -1]), [batch, -1]) as tf.Tensor2D; // (B, d)
    return { logits: lmHead(last), cache: next } as unknown as tf.TensorContainer;
  }) as unknown as StepOutput;
}

function disposeStep(step: StepOutput): void {
  step.logits.dispose();
  for (const layer of step.cache) tf.dispose([layer.k, layer.v]);
}
