/**
 * The server's side of the LLM tier: a worker thread (llm-worker.ts) holding the judge, and
 * promises for its answers. A worker that dies fails every request waiting on it with the reason.
 */
import { Worker } from 'node:worker_threads';
import type { EngineConfig, EngineRecord } from '../../../pipeline/stage-api.ts';
import type { ChatMessage } from '../relevance/prompts.ts';
import type { JudgeSources, LlmJudgement, LlmJudgeOptions, PairToJudge } from './llm-judge.ts';

export interface WorkerInit {
  sources: JudgeSources;
  engine: EngineConfig;
  options: LlmJudgeOptions;
}

export interface ChatRequest {
  messages: ChatMessage[];
  maxTokens: number;
  temperature: number;
  seed: number;
}

type WorkerRequest = { type: 'judge'; pairs: PairToJudge[] } | ({ type: 'chat' } & ChatRequest);
export type ToWorker = WorkerRequest & { id: number };

export interface ChatResult {
  text: string;
  promptTokens: number;
  completionTokens: number;
  finishReason: 'eos' | 'stop' | 'length';
}

type FromWorker =
  | { type: 'ready'; engine: EngineRecord }
  | { type: 'fatal'; message: string }
  | { type: 'error'; id: number; message: string }
  | { type: 'judged'; id: number; judgements: LlmJudgement[] }
  | ({ type: 'chatted'; id: number } & ChatResult);

export interface LlmTier {
  engine: EngineRecord;
  judge(pairs: PairToJudge[]): Promise<LlmJudgement[]>;
  chat(request: ChatRequest): Promise<ChatResult>;
  close(): Promise<void>;
}

export async function startLlmTier(init: WorkerInit): Promise<LlmTier> {
  const worker = new Worker(new URL('./llm-worker.mjs', import.meta.url), { workerData: init });
  const pending = new Map<number, { resolve: (value: never) => void; reject: (error: Error) => void }>();
  let nextId = 0;
  let dead: Error | undefined;
  const failAll = (error: Error) => {
    dead ??= error;
    for (const p of pending.values()) p.reject(error);
    pending.clear();
  };
  const engine = await new Promise<EngineRecord>((resolve, reject) => {
    worker.on('message', (message: FromWorker) => {
      if (message.type === 'ready') resolve(message.engine);
      else if (message.type === 'fatal') reject(new Error(message.message));
      else {
        const waiting = pending.get(message.id);
        pending.delete(message.id);
        if (message.type === 'error') waiting?.reject(new Error(message.message));
        else if (message.type === 'judged') waiting?.resolve(message.judgements as never);
        else waiting?.resolve({ text: message.text, promptTokens: message.promptTokens, completionTokens: message.completionTokens, finishReason: message.finishReason } as never);
      }
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
  const ask = <T>(message: WorkerRequest): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (dead) return reject(dead);
      const id = nextId++;
      pending.set(id, { resolve: resolve as (value: never) => void, reject });
      worker.postMessage({ ...message, id });
    });
  return {
    engine,
    judge: (pairs) => ask<LlmJudgement[]>({ type: 'judge', pairs }),
    chat: (request) => ask<ChatResult>({ type: 'chat', ...request }),
    close: async () => {
      dead ??= new Error('the LLM tier is closed');
      await worker.terminate();
    },
  };
}
