/**
 * A judge model as the relevance stages use it: a checkpoint folder (HF layout) loaded as model +
 * tokenizer + completion-format options, with the chat-prompt rendering, batched generation and
 * teacher-forcing ids that cot (checkpoint teacher), sft, sample, dpo, grpo and eval share.
 *
 * The completion format's options travel inside the checkpoint as `completion_format.json`, so a
 * model trained with `answer_first` is sampled and evaluated that way without repeating the option.
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { type EngineConfig, type EngineRecord, type Logger, type Rng, yieldToEventLoop } from '../../../pipeline/api.ts';
import { readCompletionFormat, type CompletionFormat } from '../artifacts/checkpoint.ts';
import type { RenderOptions } from '../relevance/completion.ts';
import { generationDefaults } from '#engine/schema';
import type { Generation, Inference, Model } from '#engine';
import type { ChatMessage, Tokenizer } from '#engine/tokenizer';

export interface Policy {
  dir: string;
  /** The tfjs model: what trains, and what `inference` exports when it runs on onnxruntime. */
  model: Model;
  tokenizer: Tokenizer;
  format: CompletionFormat;
  /** What generates and scores (engine.inference); after an optimizer step, `inference.refresh()`. */
  inference: Inference;
}

export function renderOptions(format: CompletionFormat): RenderOptions {
  return { answerFirst: format.answerFirst };
}

/**
 * Initialises the engine (once per process), loads the checkpoint in `dir` and opens its inference
 * path (its `onnx/model.onnx` when it has one). The engine record says which inference ran.
 */
export async function loadPolicy(dir: string, engine: EngineConfig, log: Logger): Promise<{ policy: Policy; engine: EngineRecord }> {
  const { initEngine, loadModel } = await import('#engine');
  const { loadTokenizer } = await import('#engine/tokenizer');
  const { ONNX_DIR, ONNX_MODEL_FILE } = await import('#engine/onnx');
  const record = await initEngine(engine, log);
  const tokenizer = await loadTokenizer(dir);
  const model = loadModel(dir);
  const inference = await openPolicyInference(model, engine, log, join(dir, ONNX_DIR, ONNX_MODEL_FILE));
  return { policy: { dir, model, tokenizer, format: await readCompletionFormat(dir), inference }, engine: { ...record, ...inference.record } };
}

/** The inference path engine.inference asks for, over a model in memory (sft's probes use it too). */
export async function openPolicyInference(model: Model, engine: EngineConfig, log: Logger, onnxFile?: string): Promise<Inference> {
  const { openInference } = await import('#engine');
  // Decoding is the only work of the process while it runs: every core the machine gives it.
  return openInference(model, { inference: engine.inference ?? 'auto', threads: availableParallelism(), onnxFile, log });
}

/** Closes the inference session and frees the model. */
export async function releasePolicy(policy: Policy): Promise<void> {
  const { disposeModel } = await import('#engine');
  await policy.inference.close();
  disposeModel(policy.model);
}

/**
 * Writes `onnx/model.onnx` of `model` into the checkpoint folder `dir`, unless engine.inference is
 * tfjs: whoever loads the checkpoint then opens an onnxruntime session without exporting.
 */
export async function writeInferenceExport(model: Model, dir: string, engine: EngineConfig): Promise<void> {
  if (engine.inference === 'tfjs') return;
  const { exportModelAsync, writeExportedModel } = await import('#engine/onnx');
  writeExportedModel(dir, await exportModelAsync(model));
}

/** The prompt as the model sees it: the chat template with the assistant turn opened. */
export function promptIds(tokenizer: Tokenizer, format: CompletionFormat, messages: readonly ChatMessage[]): number[] {
  const shown = format.dropSystemPrompt ? messages.filter((m) => m.role !== 'system') : messages;
  return tokenizer.encode(tokenizer.applyChatTemplate(shown, { addGenerationPrompt: true }));
}

/** A completion's ids for teacher forcing: its text, then the end-of-turn token. */
export function completionIds(tokenizer: Tokenizer, completion: string): number[] {
  return [...tokenizer.encode(completion), tokenizer.eosTokenId];
}

/** Where a completion is over: the last tag of the format. */
export function stopStrings(format: CompletionFormat): string[] {
  return [format.answerFirst ? '</think>' : '</answer>'];
}

export interface SamplingParams {
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
}

export interface PromptRequest {
  id: string;
  messages: readonly ChatMessage[];
}

export interface Completion extends Generation {
  id: string;
  /** Which of the n samples of this prompt. */
  sample: number;
  text: string;
  promptTokens: number[];
}

/**
 * Generates `n` completions for every request, `batchSize` rows at a time (a prompt's samples are
 * rows of their own). Prompts longer than the model's context less `maxNewTokens` are refused by
 * the engine with a message; callers filter them first with `fitsContext`.
 */
export async function generateCompletions(
  policy: Policy,
  requests: readonly PromptRequest[],
  options: SamplingParams & {
    n: number;
    batchSize: number;
    rng: Rng;
    signal?: AbortSignal;
    onBatch?: (done: number, total: number) => void;
    /** Each token a request's sample chooses, as GenerateOptions.onToken (a reason returned ends that row). */
    onToken?: (request: number, sample: number, tokens: readonly number[]) => Generation['finishReason'] | undefined;
    afterStep?: () => Promise<void>;
    /** The requests' prompt ids when the caller has them already (one entry per request). */
    promptIds?: readonly number[][];
    /** Default: the model's generation_config.json repetition_penalty (1, off, when it has none), as transformers' generate(). */
    repetitionPenalty?: number;
  },
): Promise<Completion[]> {
  const { tokenizer } = policy;
  const defaults = generationDefaults(policy.model.generation);
  const rows = requests.flatMap((request, index) => {
    const ids = options.promptIds?.[index] ?? promptIds(tokenizer, policy.format, request.messages);
    return Array.from({ length: options.n }, (_, sample) => ({ id: request.id, index, sample, ids }));
  });
  const decode = (ids: number[]) => tokenizer.decode(ids);
  const results: Completion[] = [];
  for (let start = 0; start < rows.length; start += options.batchSize) {
    options.signal?.throwIfAborted();
    const batch = rows.slice(start, start + options.batchSize);
    const generations = await policy.inference.generate(
      batch.map((row) => row.ids),
      {
        maxNewTokens: options.maxNewTokens,
        temperature: options.temperature,
        topK: options.topK,
        topP: options.topP,
        repetitionPenalty: options.repetitionPenalty ?? defaults.repetitionPenalty,
        // The tokenizer's end of turn, and every end id the model's generation_config.json names.
        eosTokenIds: [...new Set([tokenizer.eosTokenId, ...defaults.eosTokenIds])],
        stop: { strings: stopStrings(policy.format), decode },
        rng: options.rng,
        signal: options.signal,
        ...(options.onToken ? { onToken: (b: number, tokens: readonly number[]) => options.onToken?.((batch[b] as (typeof batch)[number]).index, (batch[b] as (typeof batch)[number]).sample, tokens) } : {}),
        ...(options.afterStep ? { afterStep: options.afterStep } : {}),
      },
    );
    generations.forEach((generation, i) => {
      const row = batch[i] as (typeof batch)[number];
      // The end-of-turn token is kept in `tokens` (it is part of what the policy chose) but not in the text.
      const textIds = generation.finishReason === 'eos' ? generation.tokens.slice(0, -1) : generation.tokens;
      results.push({ ...generation, id: row.id, sample: row.sample, text: tokenizer.decode(textIds, { skipSpecialTokens: true }), promptTokens: row.ids });
    });
    options.onBatch?.(Math.min(start + options.batchSize, rows.length), rows.length);
    await yieldToEventLoop();
  }
  return results;
}

/**
 * One greedy completion per request: how a judge is read (eval, the SFT/RL probes, the serving
 * judge). Greedy decoding draws nothing from `rng`; the generator still takes one.
 */
export function greedyCompletions(
  policy: Policy,
  requests: readonly PromptRequest[],
  options: { maxNewTokens: number; batchSize: number; rng: Rng; signal?: AbortSignal },
): Promise<Completion[]> {
  return generateCompletions(policy, requests, { ...options, n: 1, temperature: 0, topK: 0, topP: 1 });
}

/**
 * Greedy continuations of raw text prompts (no chat template), each ending at the end-of-sequence
 * token or the first of `stops`: how the embed stage's analysis and the rewriter's rewrite are
 * written. Each generation's `text` holds the continuation, the stop string that ended it included.
 */
export function greedyTexts(policy: Pick<Policy, 'inference' | 'tokenizer'>, prompts: readonly string[], options: { maxNewTokens: number; stops: string[]; rng: Rng; signal?: AbortSignal }): Promise<Generation[]> {
  const { tokenizer } = policy;
  return policy.inference.generate(
    prompts.map((p) => tokenizer.encode(p)),
    {
      maxNewTokens: options.maxNewTokens,
      eosTokenIds: [tokenizer.eosTokenId],
      stop: { strings: options.stops, decode: (ids) => tokenizer.decode(ids) },
      temperature: 0,
      topK: 0,
      topP: 1,
      rng: options.rng,
      ...(options.signal ? { signal: options.signal } : {}),
    },
  );
}

/** True when the prompt leaves room for `maxNewTokens` in the model's context. */
export function fitsContext(policy: Policy, promptTokens: number, maxNewTokens: number): boolean {
  return promptTokens + maxNewTokens <= policy.model.config.max_position_embeddings;
}
