/**
 * The LLM worker's chats: several generated in one batch, each streamed token by token, each ending
 * on its own terms (its max_tokens, its stop sequences, its client going away) without holding the
 * batch's other rows (GenerateOptions.onToken ends a row).
 */
import { Rng } from '../../../pipeline/api.ts';
import { generateCompletions, promptIds, type Policy } from '../judge/model.ts';
import type { ChatChoice, ChatRequest, ChatResult } from './llm-tier.ts';

export interface ChatJob extends ChatRequest {
  id: number;
  promptIds: number[];
}

/** What the worker reports of a chat as it is generated. */
export interface ChatSink {
  delta(id: number, index: number, text: string): void;
  done(id: number, result: ChatResult): void;
  /** Whether the chat's client has gone away (checked at every token). */
  cancelled(id: number): boolean;
}

/** The job, or why its prompt cannot be generated from: a message naming the context length. */
export function admitChat(policy: Policy, id: number, request: ChatRequest): ChatJob | { refused: string; param: string; code: string } {
  const ids = request.prompt !== undefined ? policy.tokenizer.encode(request.prompt) : promptIds(policy.tokenizer, policy.format, request.messages);
  if (ids.length === 0) return { refused: 'prompt: the prompt has no tokens', param: 'prompt', code: 'empty_prompt' };
  const limit = policy.model.config.max_position_embeddings;
  if (ids.length + request.maxTokens > limit) {
    return {
      refused: `This model's maximum context length is ${limit} tokens. However, you requested ${ids.length + request.maxTokens} tokens (${ids.length} in the messages, ${request.maxTokens} in the completion). Please reduce the length of the messages or max_tokens.`,
      param: ids.length >= limit ? (request.prompt !== undefined ? 'prompt' : 'messages') : 'max_tokens',
      code: 'context_length_exceeded',
    };
  }
  return { ...request, id, promptIds: ids };
}

/**
 * Whether `job` may join `batch`: greedy single-completion chats batch together (greedy decoding
 * draws nothing, so a row's tokens do not depend on its batch); a sampled chat or one asking for
 * several completions runs alone, on its own seed's generator, so its answer is reproducible. A
 * batch decodes for its longest max_tokens from its longest prompt, which must fit the context.
 */
export function joinsBatch(batch: readonly ChatJob[], job: ChatJob, maxBatch: number, contextLength: number): boolean {
  const batchable = (j: ChatJob) => j.temperature === 0 && j.n === 1;
  if (batch.length === 0) return true;
  if (batch.length >= maxBatch || !batchable(job) || !batchable(batch[0] as ChatJob)) return false;
  const width = Math.max(job.promptIds.length, ...batch.map((j) => j.promptIds.length));
  const steps = Math.max(job.maxTokens, ...batch.map((j) => j.maxTokens));
  return width + steps <= contextLength;
}

/** Where the first of `stops` begins in `text`, or -1. */
function stopAt(text: string, stops: readonly string[]): number {
  let at = -1;
  for (const stop of stops) {
    const i = text.indexOf(stop);
    if (i >= 0 && (at < 0 || i < at)) at = i;
  }
  return at;
}

/**
 * How much of a completion's text can be sent on: all but an end that may still grow into a stop
 * sequence (its text is cut before it) or a character still missing bytes (decoded as U+FFFD).
 */
export function sendable(text: string, stops: readonly string[]): number {
  let end = text.length;
  while (end > 0 && text.charCodeAt(end - 1) === 0xfffd) end--;
  let held = 0;
  for (const stop of stops) {
    for (let k = Math.min(stop.length - 1, end); k > held; k--) {
      if (text.endsWith(stop.slice(0, k), end)) {
        held = k;
        break;
      }
    }
  }
  return end - held;
}

/** Generates `jobs` (one batch, as joinsBatch formed it), telling `sink` as it goes. */
export async function generateChats(policy: Policy, jobs: readonly ChatJob[], sink: ChatSink): Promise<void> {
  const first = jobs[0] as ChatJob;
  const decode = (tokens: readonly number[]) => policy.tokenizer.decode(tokens, { skipSpecialTokens: true });
  // Per job and completion: the text sent on so far, and whether a stop sequence ended it.
  const sent = jobs.map((job) => Array.from({ length: job.n }, () => ({ chars: 0, stopped: false })));
  const send = (j: number, index: number, text: string) => {
    const job = jobs[j] as ChatJob;
    const state = sent[j]?.[index] as { chars: number };
    if (text.length > state.chars) sink.delta(job.id, index, text.slice(state.chars));
    state.chars = Math.max(state.chars, text.length);
  };
  const completions = await generateCompletions(
    policy,
    jobs.map((job) => ({ id: String(job.id), messages: job.messages })),
    {
      n: first.n,
      batchSize: jobs.length * first.n,
      maxNewTokens: Math.max(...jobs.map((j) => j.maxTokens)),
      temperature: first.temperature,
      topK: 0,
      topP: 1,
      rng: new Rng(first.seed, 'chat'),
      promptIds: jobs.map((j) => j.promptIds),
      onToken: (j, index, tokens) => {
        const job = jobs[j] as ChatJob;
        if (sink.cancelled(job.id)) return 'stop';
        if (job.stream || job.stop.length > 0) {
          const text = decode(tokens);
          const at = stopAt(text, job.stop);
          if (at >= 0) {
            (sent[j]?.[index] as { stopped: boolean }).stopped = true;
            if (job.stream) send(j, index, text.slice(0, at));
            return 'stop';
          }
          if (job.stream) send(j, index, text.slice(0, sendable(text, job.stop)));
        }
        return tokens.length >= job.maxTokens ? 'length' : undefined;
      },
      // The worker hears of cancellations and new chats between steps.
      afterStep: () => new Promise((resolve) => setImmediate(resolve)),
    },
  );
  jobs.forEach((job, j) => {
    if (sink.cancelled(job.id)) return;
    const mine = completions.filter((c) => c.id === String(job.id)).sort((a, b) => a.sample - b.sample);
    const choices = mine.map((completion): ChatChoice => {
      const index = completion.sample;
      const at = stopAt(completion.text, job.stop);
      const text = at >= 0 ? completion.text.slice(0, at) : completion.text;
      if (job.stream) send(j, index, text);
      const stopped = at >= 0 || (sent[j]?.[index] as { stopped: boolean }).stopped;
      // 'length': the row ran to its own max_tokens (onToken ended it there), not a stop or end of turn.
      return { index, text, finishReason: completion.finishReason === 'length' && !stopped ? 'length' : 'stop' };
    });
    sink.done(job.id, { choices, promptTokens: job.promptIds.length, completionTokens: mine.reduce((sum, c) => sum + c.tokens.length, 0) });
  });
}
