/**
 * Inference on an exported decoder (export.ts layout) with onnxruntime-node's CPU execution
 * provider: generation through the engine's own loop and sampling (generate.ts, sampling.ts), so a
 * seed gives the tokens tfjs gives, and teacher-forced log-probabilities for scoring.
 *
 * onnxruntime-node is imported lazily: a process that never asks for it never loads its native
 * library, and `loadOnnxRuntime` reports a failed load as a reason instead of throwing.
 */
import type * as Ort from 'onnxruntime-node';
import { modelDims, type ModelConfig } from '../model/config.ts';
import { generateWith, type GenerateOptions, type Generation, type StepDecoder } from '../generate/generate.ts';
import { positionsFromMask } from '../model/layers.ts';
import { checkTokenIds } from '../model/model.ts';
import type { PromptCompletion } from '../model/logprobs.ts';
import { logSoftmaxAt } from '../generate/sampling.ts';

type OrtModule = typeof Ort;
let runtime: Promise<OrtModule> | undefined;

/** onnxruntime-node, or the reason it cannot load here (no binary for this platform, say). */
export async function loadOnnxRuntime(): Promise<{ ort: OrtModule; version: string } | { error: string }> {
  runtime ??= import('onnxruntime-node').then((m) => ((m as unknown as { default?: OrtModule }).default ?? m) as OrtModule);
  try {
    const ort = await runtime;
    return { ort, version: ort.env.versions?.node ?? ort.env.versions?.common ?? 'unknown' };
  } catch (error) {
    runtime = undefined;
    return { error: (error as Error).message.split('\n')[0] ?? String(error) };
  }
}

/** One ONNX Runtime session of a decoder, created once and reused for every batch. */
export interface OnnxDecoder {
  ort: OrtModule;
  session: Ort.InferenceSession;
  config: ModelConfig;
  threads: number;
}

export interface OnnxSessionOptions {
  /** Intra-op threads: the cores this process may use. */
  threads: number;
}

/**
 * Opens `source` (a `model.onnx` path, or the bytes `exportDecoder` returned) with every graph
 * optimisation on (ONNX Runtime fuses the RMSNorm and attention patterns export.ts writes).
 */
export async function openOnnxDecoder(source: string | Uint8Array, config: ModelConfig, options: OnnxSessionOptions): Promise<OnnxDecoder> {
  const loaded = await loadOnnxRuntime();
  if ('error' in loaded) throw new Error(`onnxruntime-node does not load: ${loaded.error}`);
  const sessionOptions: Ort.InferenceSession.SessionOptions = {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: options.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    // Idle intra-op threads sleep instead of spinning: on a machine whose cores other processes
    // also use, spinning threads took the cores from the ones with work (2 threads decoded at
    // 443-618 tok/s spinning, 840-3090 not, 826-1151 on 1 thread, interleaved on 2 busy cores).
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  };
  const { InferenceSession } = loaded.ort;
  // A path and bytes are two overloads of create: the branch picks one for the type checker.
  const session = typeof source === 'string' ? await InferenceSession.create(source, sessionOptions) : await InferenceSession.create(source, sessionOptions);
  return { ort: loaded.ort, session, config, threads: options.threads };
}

export async function closeOnnxDecoder(decoder: OnnxDecoder): Promise<void> {
  await decoder.session.release();
}

type Past = Record<string, Ort.Tensor>;

/**
 * One run of the graph: `ids` (B, T) at `positions`, attending to `past` plus themselves where
 * `keyMask` (B, P + T) is 1. Returns logits (B, T, V) flattened and the extended cache.
 */
async function runDecoder(decoder: OnnxDecoder, ids: number[][], positions: number[][], keyMask: number[][], past: Past | undefined): Promise<{ logits: Float32Array; present: Past }> {
  const { ort, config } = decoder;
  const { kvHeads, headDim } = modelDims(config);
  const batch = ids.length;
  const steps = ids[0]?.length ?? 0;
  checkTokenIds(ids, config.vocab_size);
  const int64 = (rows: number[][]) => new ort.Tensor('int64', BigInt64Array.from(rows.flat(), (v) => BigInt(v)), [rows.length, rows[0]?.length ?? 0]);
  const feeds: Record<string, Ort.Tensor> = { input_ids: int64(ids), attention_mask: int64(keyMask), position_ids: int64(positions) };
  const empty = new ort.Tensor('float32', new Float32Array(0), [batch, kvHeads, 0, headDim]);
  for (let i = 0; i < config.num_hidden_layers; i++) {
    for (const part of ['key', 'value']) feeds[`past_key_values.${i}.${part}`] = past?.[`present.${i}.${part}`] ?? empty;
  }
  const outputs = await decoder.session.run(feeds);
  const logits = outputs.logits;
  if (!logits || logits.dims.length !== 3 || logits.dims[1] !== steps) throw new Error('Internal error: the ONNX decoder returned no (B, T, V) logits');
  return { logits: logits.data as Float32Array, present: outputs };
}

/** The session as the generation loop's `StepDecoder`: the cache is the previous run's `present.*`. */
function onnxStepDecoder(decoder: OnnxDecoder): StepDecoder {
  const vocab = decoder.config.vocab_size;
  let past: Past | undefined;
  return {
    vocabSize: vocab,
    maxPositions: decoder.config.max_position_embeddings,
    async step(ids, positions, keyMask) {
      const steps = ids[0]?.length ?? 0;
      const { logits, present } = await runDecoder(decoder, ids, positions, keyMask, past);
      past = present;
      if (steps === 1) return logits;
      const last = new Float32Array(ids.length * vocab); // (B, V): each row's last column
      for (let b = 0; b < ids.length; b++) last.set(logits.subarray((b * steps + steps - 1) * vocab, (b * steps + steps) * vocab), b * vocab);
      return last;
    },
    release() {
      past = undefined;
    },
  };
}

/** `generate` (generate.ts) on ONNX Runtime: same options, same loop, same sampling. */
export function generateOnnx(decoder: OnnxDecoder, prompts: number[][], options: GenerateOptions): Promise<Generation[]> {
  return generateWith(onnxStepDecoder(decoder), prompts, options);
}

/**
 * Teacher-forced log p(completion token j | prompt, earlier tokens) per row, one entry per
 * completion token (what logprobs.ts `sequenceLogprobs` gives without gradients). Rows are
 * right-padded: causal attention never looks right, so padding changes nothing.
 */
export async function sequenceLogprobsOnnx(decoder: OnnxDecoder, batch: readonly PromptCompletion[]): Promise<number[][]> {
  if (batch.length === 0) return [];
  if (batch.some((e) => e.prompt.length === 0)) throw new Error('sequenceLogprobs: every prompt needs at least one token');
  const vocab = decoder.config.vocab_size;
  const width = Math.max(...batch.map((e) => e.prompt.length + e.completion.length));
  if (width > decoder.config.max_position_embeddings) {
    throw new Error(`sequenceLogprobs: sequence length ${width} exceeds max_position_embeddings ${decoder.config.max_position_embeddings}`);
  }
  const ids = batch.map((e) => [...e.prompt, ...e.completion, ...new Array<number>(width - e.prompt.length - e.completion.length).fill(0)]);
  const mask = batch.map((e) => ids[0]!.map((_, t) => (t < e.prompt.length + e.completion.length ? 1 : 0)));
  const { logits } = await runDecoder(decoder, ids, positionsFromMask(mask), mask, undefined); // (B, W, V)
  // Completion token j of row b is predicted by the logits at position prompt.length + j - 1.
  return batch.map((e, b) =>
    e.completion.map((token, j) => {
      const at = (b * width + e.prompt.length + j - 1) * vocab;
      return logSoftmaxAt(logits.subarray(at, at + vocab), token);
    }),
  );
}
