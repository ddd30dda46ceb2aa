/**
 * A teacher behind any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp server,
 * Ollama...). Requests run through a p-queue (concurrency and requests-per-minute), are retried
 * with exponential backoff that honours Retry-After, and every answer is cached on disk under the
 * hash of what was asked, so rerunning a synthesis costs nothing.
 *
 * The API key is read from an environment variable named in the config and is never written
 * anywhere: not to logs, manifests, the cache, or error messages (they are scrubbed, encoded and
 * partial echoes too: secret-scrub.ts).
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import PQueue from 'p-queue';
import type { Logger } from '../../pipeline/api.ts';
import type { ChatMessage } from '../lib/relevance/prompts.ts';
import { secretScrubber } from './secret-scrub.ts';

export type { ChatMessage } from '../lib/relevance/prompts.ts';

export interface OpenAiTeacherConfig {
  baseUrl: string;
  model: string;
  /** Name of the environment variable that holds the key (the key itself never enters config). */
  apiKeyEnv: string;
  temperature: number;
  maxTokens: number;
  concurrency: number;
  requestsPerMinute: number;
  maxRetries: number;
  /** First backoff delay; it doubles per attempt, capped at 30 s. */
  backoffS: number;
  timeoutS: number;
}

export interface TeacherRequest {
  id: string;
  messages: ChatMessage[];
}

export type TeacherAnswer = { id: string; text: string; cached: boolean } | { id: string; error: string };

export class TeacherAuthError extends Error {}

/** Where the request must not be retried: the request itself is wrong. */
class PermanentError extends Error {}

/** Server-requested or backoff delay before the next attempt, in milliseconds. */
function retryDelayMs(attempt: number, retryAfter: string | null, backoffS: number): number {
  if (retryAfter) {
    const seconds = Number(retryAfter);
    if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
    const date = Date.parse(retryAfter);
    if (!Number.isNaN(date)) return Math.max(0, date - Date.now());
  }
  // backoff, 2x, 4x, ... capped at 30 s: the usual shape for rate-limited APIs.
  return Math.min(30_000, backoffS * 1000 * 2 ** attempt);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

export function requestHash(config: OpenAiTeacherConfig, messages: ChatMessage[]): string {
  const key = JSON.stringify([config.baseUrl, config.model, config.temperature, config.maxTokens, messages]);
  return createHash('sha256').update(key).digest('hex');
}

export class OpenAiTeacher {
  private readonly apiKey: string | undefined;

  constructor(
    private readonly config: OpenAiTeacherConfig,
    private readonly cacheDir: string,
    private readonly log: Logger,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.apiKey = env[config.apiKeyEnv];
    if (!this.apiKey) log.warn(`openai teacher: $${config.apiKeyEnv} is not set; sending requests without a key`);
    this.scrub = secretScrubber(this.apiKey);
  }

  /** Removes the key, and encoded or partial echoes of it, from any text that might be logged or stored. */
  private readonly scrub: (text: string) => string;

  /** The start of a response body for a message: masked first, since a cut could split the key. */
  private excerpt(body: string, length: number): string {
    return this.scrub(body).slice(0, length);
  }

  /**
   * Asks for every request, `onAnswer` called as each one settles. A request that still fails after
   * its retries yields `{ error }` (counted by the caller); a 401/403 stops everything.
   */
  async completeAll(
    requests: TeacherRequest[],
    onAnswer: (answer: TeacherAnswer) => void,
    signal?: AbortSignal,
  ): Promise<TeacherAnswer[]> {
    await mkdir(this.cacheDir, { recursive: true });
    const queue = new PQueue({
      concurrency: this.config.concurrency,
      intervalCap: this.config.requestsPerMinute,
      interval: 60_000,
    });
    const answers = await Promise.all(
      requests.map((request) =>
        queue.add(async (): Promise<TeacherAnswer> => {
          const answer = await this.complete(request, signal);
          onAnswer(answer);
          return answer;
        }),
      ),
    );
    return answers as TeacherAnswer[];
  }

  async complete(request: TeacherRequest, signal?: AbortSignal): Promise<TeacherAnswer> {
    const hash = requestHash(this.config, request.messages);
    const cachePath = join(this.cacheDir, `${hash}.json`);
    const cached = await readFile(cachePath, 'utf8').then(
      (text) => JSON.parse(text) as { text: string },
      () => undefined,
    );
    if (cached) return { id: request.id, text: cached.text, cached: true };

    let lastError = '';
    for (let attempt = 0; attempt <= this.config.maxRetries; attempt++) {
      signal?.throwIfAborted();
      try {
        const answer = await this.post(request.messages, signal);
        const text = this.scrub(answer);
        // An answer that echoes the key is kept out of the cache; the caller gets it masked.
        if (text === answer) {
          const temporary = `${cachePath}.${process.pid}.tmp`;
          await writeFile(temporary, JSON.stringify({ text }));
          await rename(temporary, cachePath);
        }
        return { id: request.id, text, cached: false };
      } catch (error) {
        if (error instanceof TeacherAuthError) throw error;
        if (signal?.aborted) throw signal.reason;
        lastError = this.scrub(error instanceof Error ? error.message : String(error));
        if (error instanceof PermanentError) break;
        const retryAfter = error instanceof RetryableError ? error.retryAfter : null;
        if (attempt < this.config.maxRetries) {
          const delay = retryDelayMs(attempt, retryAfter, this.config.backoffS);
          this.log.debug(`openai teacher: ${request.id}: ${lastError}; retry ${attempt + 1} in ${delay} ms`);
          await sleep(delay, signal);
        }
      }
    }
    return { id: request.id, error: lastError };
  }

  private async post(messages: ChatMessage[], signal?: AbortSignal): Promise<string> {
    const url = `${this.config.baseUrl.replace(/\/+$/, '')}/chat/completions`;
    const timeout = AbortSignal.timeout(this.config.timeoutS * 1000);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers,
        body: JSON.stringify({
          model: this.config.model,
          messages,
          temperature: this.config.temperature,
          max_tokens: this.config.maxTokens,
        }),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (error) {
      if (timeout.aborted) throw new RetryableError(`timed out after ${this.config.timeoutS} s`, null);
      throw new RetryableError(`request failed: ${error instanceof Error ? error.message : String(error)}`, null);
    }
    const body = await response.text().catch(() => '');
    if (response.status === 401 || response.status === 403) {
      throw new TeacherAuthError(
        `openai teacher: ${url} answered ${response.status}: check $${this.config.apiKeyEnv} (${this.excerpt(body, 200)})`,
      );
    }
    if (response.status === 429 || response.status === 408 || response.status >= 500) {
      throw new RetryableError(`HTTP ${response.status}`, response.headers.get('retry-after'));
    }
    if (!response.ok) throw new PermanentError(`HTTP ${response.status}: ${this.excerpt(body, 200)}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      // A proxy or overloaded server can return a truncated body: worth another try.
      throw new RetryableError(`malformed JSON in the response: ${this.excerpt(body, 80)}`, null);
    }
    const content = (parsed as { choices?: { message?: { content?: unknown } }[] }).choices?.[0]?.message?.content;
    if (typeof content !== 'string') throw new RetryableError('the response has no choices[0].message.content', null);
    return content;
  }
}

class RetryableError extends Error {
  constructor(
    message: string,
    readonly retryAfter: string | null,
  ) {
    super(message);
  }
}
