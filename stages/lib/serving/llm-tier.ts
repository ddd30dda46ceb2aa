/**
 * The server's side of the LLM tier: a worker thread (llm-worker.ts) holding the judge, and
 * promises for its answers. A worker that dies fails every request waiting on it with the reason.
 * A chat hears back three times: accepted (its prompt fits the context: a streaming answer sends
 * its headers), each piece of text as it is generated, and done; a chat whose signal aborts (its
 * client went away) is cancelled in the worker, which stops generating it.
 */
import { Worker } from 'node:worker_threads';
import type { EngineConfig, EngineRecord } from '../../../pipeline/api.ts';
import type { ChatMessage } from '../relevance/prompts.ts';
import type { JudgeSources, LlmJudgement, LlmJudgeOptions, PairToJudge } from './llm-judge.ts';

export interface WorkerInit {
  sources: JudgeSources;
  engine: EngineConfig;
  options: LlmJudgeOptions;
}

export interface ChatRequest {
  messages: ChatMessage[];
  /** A raw prompt (/v1/completions), generated from as it is, without the chat template; `messages` is then empty. */
  prompt?: string;
  maxTokens: number;
  temperature: number;
  seed: number;
  /** Completions of the one prompt (OpenAI's `n`). */
  n: number;
  /** Sequences that end a completion, left out of its text (OpenAI's `stop`). */
  stop: string[];
  /** Whether the worker sends the text on as it is generated. */
  stream: boolean;
}

export interface ChatChoice {
  index: number;
  text: string;
  finishReason: 'stop' | 'length';
}

export interface ChatResult {
  choices: ChatChoice[];
  promptTokens: number;
  completionTokens: number;
}

export interface ChatEvents {
  /** The prompt fits: generation is queued (`promptTokens` long). */
  onAccepted?(promptTokens: number): void;
  /** More text of completion `index`, as generated (streamed chats). */
  onDelta?(index: number, text: string): void;
  /** Aborting cancels the chat: the worker stops generating it, and the promise rejects. */
  signal?: AbortSignal;
}

/** A chat the worker refused before generating (code: context_length_exceeded); the server answers 400. */
export class ChatRefused extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly param: string,
  ) {
    super(message);
  }
}

type WorkerRequest = { type: 'judge'; pairs: PairToJudge[] } | ({ type: 'chat' } & ChatRequest) | { type: 'cancel' };
export type ToWorker = WorkerRequest & { id: number };

export type FromWorker =
  | { type: 'ready'; engine: EngineRecord; contextLength: number }
  | { type: 'fatal'; message: string }
  | { type: 'batch'; chats: number }
  | { type: 'error'; id: number; message: string; refused?: { code: string; param: string } }
  | { type: 'judged'; id: number; judgements: LlmJudgement[] }
  | { type: 'accepted'; id: number; promptTokens: number }
  | { type: 'delta'; id: number; index: number; text: string }
  | ({ type: 'chatted'; id: number } & ChatResult);

export interface LlmTier {
  engine: EngineRecord;
  /** The judge's context (max_position_embeddings): prompt and completion tokens together. */
  contextLength: number;
  /** Chats generated and the batches they were generated in, since start. */
  readonly chatStats: { chats: number; batches: number };
  judge(pairs: PairToJudge[]): Promise<LlmJudgement[]>;
  chat(request: ChatRequest, events?: ChatEvents): Promise<ChatResult>;
  close(): Promise<void>;
}

interface Pending {
  resolve: (value: never) => void;
  reject: (error: Error) => void;
  events?: ChatEvents;
}

export async function startLlmTier(init: WorkerInit): Promise<LlmTier> {
  const worker = new Worker(new URL('./llm-worker.mjs', import.meta.url), { workerData: init });
  const pending = new Map<number, Pending>();
  let nextId = 0;
  let dead: Error | undefined;
  const failAll = (error: Error) => {
    dead ??= error;
    for (const p of pending.values()) p.reject(error);
    pending.clear();
  };
  const chatStats = { chats: 0, batches: 0 };
  const ready = await new Promise<{ engine: EngineRecord; contextLength: number }>((resolve, reject) => {
    worker.on('message', (message: FromWorker) => {
      if (message.type === 'ready') return resolve(message);
      if (message.type === 'fatal') return reject(new Error(message.message));
      if (message.type === 'batch') {
        chatStats.batches++;
        chatStats.chats += message.chats;
        return;
      }
      // A cancelled chat's late messages find nobody waiting.
      const waiting = pending.get(message.id);
      if (!waiting) return;
      if (message.type === 'accepted') return waiting.events?.onAccepted?.(message.promptTokens);
      if (message.type === 'delta') return waiting.events?.onDelta?.(message.index, message.text);
      pending.delete(message.id);
      if (message.type === 'error') waiting.reject(message.refused ? new ChatRefused(message.message, message.refused.code, message.refused.param) : new Error(message.message));
      else if (message.type === 'judged') waiting.resolve(message.judgements as never);
      else waiting.resolve({ choices: message.choices, promptTokens: message.promptTokens, completionTokens: message.completionTokens } as never);
    });
    worker.on('error', (error) => {
      reject(error);
      failAll(new Error(`the LLM worker crashed: ${error.message}`));
    });
    worker.on('exit', (code) => {
      reject(new Error(`the LLM worker exited (code ${code}) before it was ready`));
      failAll(new Error(`the LLM worker exited (code ${code})`));
    });
  });
  const ask = <T>(message: WorkerRequest, events?: ChatEvents): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (dead) return reject(dead);
      const { signal } = events ?? {};
      if (signal?.aborted) return reject(signal.reason as Error);
      const id = nextId++;
      pending.set(id, { resolve: resolve as (value: never) => void, reject, ...(events ? { events } : {}) });
      signal?.addEventListener(
        'abort',
        () => {
          if (!pending.delete(id)) return;
          worker.postMessage({ type: 'cancel', id } satisfies ToWorker);
          reject(signal.reason as Error);
        },
        { once: true },
      );
      worker.postMessage({ ...message, id });
    });
  return {
    engine: ready.engine,
    contextLength: ready.contextLength,
    chatStats,
    judge: (pairs) => ask<LlmJudgement[]>({ type: 'judge', pairs }),
    chat: (request, events) => ask<ChatResult>({ type: 'chat', ...request }, events),
    close: async () => {
      dead ??= new Error('the LLM tier is closed');
      await worker.terminate();
    },
  };
}
