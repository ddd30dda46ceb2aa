/**
 * The server's OpenAI-compatible routes, through the LLM tier's worker:
 *
 *   POST /v1/chat/completions   messages (string or text-part content; system, developer, user,
 *                               assistant roles), n, stop, max_tokens, temperature, seed, stream
 *                               with stream_options.include_usage
 *   POST /v1/completions        a raw prompt, without the chat template; the same options
 *   GET  /v1/models/{id}        the served model, or 404
 *
 * Streamed answers send their headers once the prompt is known to fit, then one chunk per piece of
 * text as the worker generates it (a token, or a few when one character takes several). A client
 * that goes away cancels its generation; it is counted as a cancelled request.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, invalidRequest } from './api-errors.ts';
import { checkTextFields } from './http-input.ts';
import { ChatRefused, type ChatRequest, type ChatResult } from './llm-tier.ts';
import type { LoadedDeployment } from './load-deployment.ts';
import type { ServingMetrics } from './prometheus.ts';

/** OpenAI allows up to 4 stop sequences; `n` is bounded so one request cannot fill a batch many times over. */
const MAX_STOP = 4;
const MAX_N = 8;

const stopSchema = { anyOf: [{ type: 'string' }, { type: 'array', maxItems: MAX_STOP, items: { type: 'string', minLength: 1 } }, { type: 'null' }] } as const;
const commonProperties = {
  model: { type: 'string' },
  max_tokens: { type: ['integer', 'null'], minimum: 1 },
  temperature: { type: ['number', 'null'], minimum: 0, maximum: 2 },
  seed: { type: ['integer', 'null'] },
  n: { type: ['integer', 'null'], minimum: 1, maximum: MAX_N },
  stop: stopSchema,
  stream: { type: ['boolean', 'null'] },
  stream_options: { type: ['object', 'null'], properties: { include_usage: { type: 'boolean' } } },
} as const;

const textPart = { type: 'object', required: ['type'], properties: { type: { type: 'string' }, text: { type: 'string' } } } as const;
const chatSchema = {
  type: 'object',
  required: ['messages'],
  properties: {
    ...commonProperties,
    max_completion_tokens: { type: ['integer', 'null'], minimum: 1 },
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['role', 'content'],
        properties: { role: { enum: ['system', 'developer', 'user', 'assistant'] }, content: { anyOf: [{ type: 'string' }, { type: 'array', items: textPart }] }, name: { type: 'string' } },
      },
    },
  },
} as const;
const completionSchema = { type: 'object', required: ['prompt'], properties: { ...commonProperties, prompt: { anyOf: [{ type: 'string' }, { type: 'array', minItems: 1, maxItems: 1, items: { type: 'string' } }] } } } as const;

type Content = string | { type: string; text?: string }[];
interface CommonBody {
  model?: string;
  max_tokens?: number | null;
  temperature?: number | null;
  seed?: number | null;
  n?: number | null;
  stop?: string | string[] | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
}
interface ChatBody extends CommonBody {
  max_completion_tokens?: number | null;
  messages: { role: 'system' | 'developer' | 'user' | 'assistant'; content: Content }[];
}
interface CompletionBody extends CommonBody {
  prompt: string | [string];
}

/** A message's text: its string, or its text parts joined (other parts are a 400 naming them). */
function contentText(content: Content, at: string): string {
  if (typeof content === 'string') return content;
  return content
    .map((part, i) => {
      if (part.type !== 'text' || typeof part.text !== 'string') throw invalidRequest(`${at}[${i}].type`, `only text parts are supported (got ${JSON.stringify(part.type)} without text)`, 'unsupported_content');
      return part.text;
    })
    .join('');
}

export interface OpenAiRouteOptions {
  loaded: LoadedDeployment;
  metrics: ServingMetrics;
  retryAfterSeconds(): number;
}

export function registerOpenAiRoutes(app: FastifyInstance, { loaded, metrics, retryAfterSeconds }: OpenAiRouteOptions): void {
  const model = loaded.modelName;
  let waiting = 0;

  const checkModel = (requested: string | undefined) => {
    if (requested !== undefined && requested !== model) throw new ApiError(404, `The model '${requested}' does not exist: this server serves ${model}`, 'invalid_request_error', 'model_not_found', 'model');
  };

  /** The request's generation settings, checked against the context before the worker tokenises anything. */
  const settings = (body: CommonBody, maxTokens: number | null | undefined, defaultMaxTokens: number): Omit<ChatRequest, 'messages' | 'prompt'> => {
    const tokens = maxTokens ?? defaultMaxTokens;
    const limit = loaded.llm.contextLength;
    if (tokens >= limit) {
      throw new ApiError(400, `max_tokens is too large: ${tokens}. This model's maximum context length is ${limit} tokens (prompt and completion together), so max_tokens must be below ${limit}.`, 'invalid_request_error', 'context_length_exceeded', 'max_tokens');
    }
    const stop = body.stop === undefined || body.stop === null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
    if (stop.some((s) => s === '')) throw invalidRequest('stop', 'a stop sequence must not be empty');
    return { maxTokens: tokens, temperature: body.temperature ?? 0, seed: body.seed ?? 0, n: body.n ?? 1, stop, stream: body.stream === true };
  };

  /** Runs the request through the worker, streaming or not; `respond` shapes the answer. */
  const generate = async (request: FastifyRequest, reply: FastifyReply, chat: ChatRequest, shape: ResponseShape) => {
    if (waiting >= loaded.deployment.llm.queueLimit) {
      throw new ApiError(429, 'The LLM tier is at capacity; retry later', 'rate_limit_error', 'queue_full', null, { 'retry-after': String(retryAfterSeconds()) });
    }
    const id = `${shape.idPrefix}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
    const created = Math.floor(Date.now() / 1000);
    const gone = new AbortController();
    reply.raw.on('close', () => {
      if (!reply.raw.writableFinished) gone.abort(new Error('the client went away'));
    });
    const write = (chunk: unknown) => reply.raw.write(`data: ${JSON.stringify(chunk)}\n\n`);
    let streaming = false;
    waiting++;
    let result: ChatResult;
    try {
      result = await loaded.llm.chat(chat, {
        signal: gone.signal,
        onAccepted: () => {
          if (!chat.stream) return;
          // Headers first, as soon as the prompt is known to fit: the client sees the answer start.
          streaming = true;
          reply.hijack();
          reply.raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
          for (let index = 0; index < chat.n; index++) write(shape.chunk(id, created, index, { start: true }));
        },
        onDelta: (index, text) => write(shape.chunk(id, created, index, { text })),
      });
    } catch (error) {
      if (gone.signal.aborted) {
        if (!streaming) reply.hijack();
        const started = (request as { started?: number }).started ?? performance.now();
        metrics.request(request.routeOptions.url ?? 'unknown', 499, (performance.now() - started) / 1000, 'cancelled');
        return reply;
      }
      if (error instanceof ChatRefused) throw invalidRequest(error.param, error.message, error.code);
      if (!streaming) throw error;
      // Past the headers, an error is the stream's last event, in OpenAI's shape (the SDK raises it).
      request.log.error(error);
      write({ error: { message: (error as Error).message, type: 'server_error', param: null, code: 'generation_failed' } });
      reply.raw.end();
      return reply;
    } finally {
      waiting--;
    }
    const usage = { prompt_tokens: result.promptTokens, completion_tokens: result.completionTokens, total_tokens: result.promptTokens + result.completionTokens };
    if (!streaming) return shape.whole(id, created, result, usage);
    for (const choice of result.choices) write(shape.chunk(id, created, choice.index, { finish: choice.finishReason }));
    if (request.body && (request.body as CommonBody).stream_options?.include_usage) write(shape.usageChunk(id, created, usage));
    reply.raw.end('data: [DONE]\n\n');
    return reply;
  };

  app.post<{ Body: ChatBody }>('/v1/chat/completions', { schema: { body: chatSchema } }, async (request, reply) => {
    const body = request.body;
    checkModel(body.model);
    const messages = body.messages.map((message, i) => ({
      // The developer role is OpenAI's newer name for the system message.
      role: message.role === 'developer' ? 'system' : message.role,
      content: contentText(message.content, `messages[${i}].content`),
    }));
    checkTextFields({ messages: messages.map((m) => ({ content: m.content })) }, () => false);
    return generate(request, reply, { messages, ...settings(body, body.max_completion_tokens ?? body.max_tokens, loaded.deployment.llm.maxNewTokens) }, chatShape(model));
  });

  app.post<{ Body: CompletionBody }>('/v1/completions', { schema: { body: completionSchema } }, async (request, reply) => {
    const body = request.body;
    checkModel(body.model);
    const prompt = typeof body.prompt === 'string' ? body.prompt : body.prompt[0];
    checkTextFields({ prompt }, () => true);
    // OpenAI's default for /v1/completions is 16 tokens.
    return generate(request, reply, { messages: [], prompt, ...settings(body, body.max_tokens, 16) }, completionShape(model));
  });

  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request) => {
    if (request.params.id !== model) throw new ApiError(404, `The model '${request.params.id}' does not exist: this server serves ${model}`, 'invalid_request_error', 'model_not_found', 'model');
    return modelCard(loaded);
  });
}

export const modelCard = (loaded: Pick<LoadedDeployment, 'modelName' | 'created'>) => ({ id: loaded.modelName, object: 'model', created: loaded.created, owned_by: 'lore-pipeline' });

type Usage = { prompt_tokens: number; completion_tokens: number; total_tokens: number };
interface ResponseShape {
  idPrefix: string;
  chunk(id: string, created: number, index: number, part: { start?: true; text?: string; finish?: string }): unknown;
  usageChunk(id: string, created: number, usage: Usage): unknown;
  whole(id: string, created: number, result: ChatResult, usage: Usage): unknown;
}

function chatShape(model: string): ResponseShape {
  const base = (id: string, created: number) => ({ id, object: 'chat.completion.chunk', created, model });
  return {
    idPrefix: 'chatcmpl',
    chunk: (id, created, index, part) => ({
      ...base(id, created),
      choices: [{ index, delta: part.start ? { role: 'assistant', content: '' } : part.text !== undefined ? { content: part.text } : {}, logprobs: null, finish_reason: part.finish ?? null }],
    }),
    usageChunk: (id, created, usage) => ({ ...base(id, created), choices: [], usage }),
    whole: (id, created, result, usage) => ({
      id,
      object: 'chat.completion',
      created,
      model,
      choices: result.choices.map((c) => ({ index: c.index, message: { role: 'assistant', content: c.text }, logprobs: null, finish_reason: c.finishReason })),
      usage,
    }),
  };
}

function completionShape(model: string): ResponseShape {
  const base = (id: string, created: number) => ({ id, object: 'text_completion', created, model });
  return {
    idPrefix: 'cmpl',
    // A completion stream has no role chunk: its first chunk is text.
    chunk: (id, created, index, part) => ({ ...base(id, created), choices: [{ index, text: part.text ?? '', logprobs: null, finish_reason: part.finish ?? null }] }),
    usageChunk: (id, created, usage) => ({ ...base(id, created), choices: [], usage }),
    whole: (id, created, result, usage) => ({ ...base(id, created), choices: result.choices.map((c) => ({ index: c.index, text: c.text, logprobs: null, finish_reason: c.finishReason })), usage }),
  };
}
