/**
 * `pipeline serve`: the judge over HTTP (Fastify, JSON-schema validation, pino's JSON logs).
 *
 *   POST /v1/relevance          {query, items[]} -> {results: [{id?, grade, probabilities, tier, reasons, fallback?}]}
 *   POST /v1/chat/completions   OpenAI-compatible (stream: true sends server-sent events), through the LLM tier
 *   GET  /v1/models             the served checkpoint
 *   GET  /healthz               ok, with what each tier holds
 *   GET  /metrics               Prometheus text (metrics.ts)
 *
 * Errors are JSON {error, message, path?}: 400 names the key path of a malformed body, 413 a body
 * over the limit, 429 (with Retry-After) a full LLM queue, 503 a server that is draining.
 */
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { GRADES } from '../relevance/types.ts';
import type { Item } from '../relevance/types.ts';
import type { DynamicBatcher } from './batcher.ts';
import type { LoadedDeployment } from './load-deployment.ts';
import type { ServingMetrics } from './metrics.ts';
import { QueueFullError, routeRequest, type RouterParts } from './router.ts';
import type { LlmJudgement, PairToJudge } from './llm-judge.ts';

export interface ServerOptions {
  host: string;
  port: number;
  /** Largest request body, bytes. */
  bodyLimit: number;
  /** Most items in one relevance request. */
  maxItems: number;
  /** pino options, or false for no logs. */
  logger: boolean | { level: string };
}

const itemSchema = {
  type: 'object',
  required: ['title'],
  additionalProperties: false,
  properties: {
    id: { type: 'string' },
    title: { type: 'string', minLength: 1 },
    category: { type: 'array', items: { type: 'string' } },
    attributes: { type: 'object', additionalProperties: { type: 'string' } },
    description: { type: 'string' },
    image_caption: { type: 'string' },
  },
} as const;

const probabilitiesSchema = { type: ['object', 'null'], properties: Object.fromEntries(GRADES.map((g) => [g, { type: 'number' }])) } as const;
const relevanceResponseSchema = {
  type: 'object',
  properties: {
    results: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          grade: { type: 'string' },
          probabilities: probabilitiesSchema,
          tier: { type: 'string' },
          reasons: { type: 'array', items: { type: 'string' } },
          fallback: { type: 'string' },
        },
      },
    },
  },
} as const;

/** `POST /v1/relevance`'s body and answer schemas (bench/serve-floor.ts serves the same ones). */
export const relevanceSchema = (maxItems: number) => ({
  body: {
    type: 'object',
    required: ['query', 'items'],
    additionalProperties: false,
    properties: { query: { type: 'string', minLength: 1 }, items: { type: 'array', minItems: 1, maxItems, items: itemSchema } },
  },
  // A response schema lets Fastify serialise with a compiled stringifier, not JSON.stringify.
  response: { 200: relevanceResponseSchema },
});

const chatSchema = {
  type: 'object',
  required: ['messages'],
  properties: {
    model: { type: 'string' },
    messages: {
      type: 'array',
      minItems: 1,
      items: { type: 'object', required: ['role', 'content'], properties: { role: { enum: ['system', 'user', 'assistant'] }, content: { type: 'string' } } },
    },
    max_tokens: { type: 'integer', minimum: 1 },
    max_completion_tokens: { type: 'integer', minimum: 1 },
    temperature: { type: 'number', minimum: 0 },
    seed: { type: 'integer' },
    stream: { type: 'boolean' },
  },
} as const;

/** JSON pointer "/items/0/title" -> key path "items[0].title". */
export function keyPath(pointer: string, missing?: string): string {
  const parts = pointer.split('/').filter((p) => p !== '');
  if (missing !== undefined) parts.push(missing);
  return parts.reduce((path, part) => (/^\d+$/.test(part) ? `${path}[${part}]` : path === '' ? part : `${path}.${part}`), '');
}

// No type coercion and no silent removal of unknown keys: a wrong type or key is a 400 naming it.
export const fastifyOptions = (options: Pick<ServerOptions, 'logger' | 'bodyLimit'>) => ({
  logger: options.logger,
  bodyLimit: options.bodyLimit,
  ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
});

export interface RunningServer {
  app: FastifyInstance;
  url: string;
  /** The routing and batching settings in force (read live: changing one changes the server's behaviour). */
  deployment: LoadedDeployment['deployment'];
  /** Stops accepting, answers everything in flight, then releases the tiers. */
  drain(): Promise<void>;
}

export async function startServer(loaded: LoadedDeployment, batcher: DynamicBatcher<PairToJudge, LlmJudgement>, metrics: ServingMetrics, options: ServerOptions): Promise<RunningServer> {
  const app = Fastify(fastifyOptions(options));
  let draining = false;
  const parts: RouterParts = {
    deployment: loaded.deployment,
    cache: loaded.headCache,
    distilled: loaded.distilled,
    ...(loaded.kg ? { kg: loaded.kg } : {}),
    queryLog: loaded.queryLog,
    llm: batcher,
    onPair: (tier, seconds, fallback) => metrics.pair(tier, seconds, fallback),
  };

  // Callback hooks rather than async ones: no promise per hook on every request.
  app.addHook('onRequest', (request, reply, done) => {
    (request as { started?: number }).started = performance.now();
    if (draining) return reply.code(503).header('connection', 'close').send({ error: 'draining', message: 'the server is shutting down' });
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    const started = (request as { started?: number }).started ?? performance.now();
    metrics.request(request.routeOptions.url ?? 'unknown', reply.statusCode, (performance.now() - started) / 1000);
    done();
  });

  app.setErrorHandler((error: FastifyError, _request, reply) => {
    if (error.validation) {
      const first = error.validation[0];
      const params = (first?.params ?? {}) as { missingProperty?: string; additionalProperty?: string };
      const path = keyPath(first?.instancePath ?? '', params.missingProperty ?? params.additionalProperty);
      return reply.code(400).send({ error: 'invalid_request', path, message: `${path === '' ? 'body' : path}: ${first?.message ?? error.message}` });
    }
    if (error.statusCode === 413) return reply.code(413).send({ error: 'body_too_large', message: `the body is over ${options.bodyLimit} bytes` });
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      return reply.code(error.statusCode).send({ error: error.code ?? 'bad_request', message: error.message });
    }
    app.log.error(error);
    return reply.code(500).send({ error: 'internal', message: error.message });
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send({ error: 'not_found', message: `no route ${request.method} ${request.url}` }));

  app.post<{ Body: { query: string; items: Item[] } }>(
    '/v1/relevance',
    { schema: relevanceSchema(options.maxItems) },
    async (request, reply) => {
      const items = request.body.items.map((item) => ({ ...item, category: item.category ?? [], attributes: item.attributes ?? {} }));
      try {
        return { results: await routeRequest(parts, request.body.query, items) };
      } catch (error) {
        if (error instanceof QueueFullError) {
          return reply.code(429).header('retry-after', String(error.retryAfterSeconds)).send({ error: 'queue_full', message: `${error.message}; retry after ${error.retryAfterSeconds} s` });
        }
        throw error;
      }
    },
  );

  let chatsWaiting = 0;
  app.post<{ Body: { model?: string; messages: { role: 'system' | 'user' | 'assistant'; content: string }[]; max_tokens?: number; max_completion_tokens?: number; temperature?: number; seed?: number; stream?: boolean } }>(
    '/v1/chat/completions',
    { schema: { body: chatSchema } },
    async (request, reply) => {
      const body = request.body;
      if (body.model !== undefined && body.model !== loaded.modelName) {
        return reply.code(404).send({ error: 'model_not_found', path: 'model', message: `model: this server serves ${loaded.modelName}, not ${body.model}` });
      }
      if (chatsWaiting >= loaded.deployment.llm.queueLimit) {
        return reply.code(429).header('retry-after', String(batcher.retryAfterSeconds())).send({ error: 'queue_full', message: 'the LLM tier is at capacity' });
      }
      chatsWaiting++;
      let result;
      try {
        result = await loaded.llm.chat({
          messages: body.messages,
          maxTokens: body.max_completion_tokens ?? body.max_tokens ?? loaded.deployment.llm.maxNewTokens,
          temperature: body.temperature ?? 0,
          seed: body.seed ?? 0,
        });
      } finally {
        chatsWaiting--;
      }
      const id = `chatcmpl-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
      const created = Math.floor(Date.now() / 1000);
      const finish = result.finishReason === 'length' ? 'length' : 'stop';
      if (!body.stream) {
        return {
          id,
          object: 'chat.completion',
          created,
          model: loaded.modelName,
          choices: [{ index: 0, message: { role: 'assistant', content: result.text }, finish_reason: finish }],
          usage: { prompt_tokens: result.promptTokens, completion_tokens: result.completionTokens, total_tokens: result.promptTokens + result.completionTokens },
        };
      }
      // Server-sent events as OpenAI sends them: the role, the content line by line, the finish, [DONE].
      // The worker decodes a whole completion at once, so the chunks follow it rather than each token.
      const chunk = (delta: Record<string, string>, finishReason: string | null) =>
        `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: loaded.modelName, choices: [{ index: 0, delta, finish_reason: finishReason }] })}\n\n`;
      const pieces = result.text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
      reply.raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      reply.raw.write(chunk({ role: 'assistant', content: '' }, null));
      for (const piece of pieces) reply.raw.write(chunk({ content: piece }, null));
      reply.raw.write(chunk({}, finish));
      reply.raw.end('data: [DONE]\n\n');
      return reply;
    },
  );

  app.get('/v1/models', async () => ({ object: 'list', data: [{ id: loaded.modelName, object: 'model', created: loaded.created, owned_by: 'lore-pipeline' }] }));
  app.get('/healthz', async () => ({
    status: draining ? 'draining' : 'ok',
    model: loaded.modelName,
    tiers: { cache: { kind: loaded.deployment.cache.kind, entries: loaded.cacheEntries }, distilled: { words: Object.keys(loaded.distilled.query).length }, llm: { backend: loaded.llm.engine.backend, queued: batcher.queued } },
    route: { minConfidence: loaded.deployment.route.minConfidence, llmTiers: loaded.deployment.route.llmTiers },
    grades: GRADES,
  }));
  app.get('/metrics', async (_request, reply) => reply.header('content-type', metrics.contentType).send(await metrics.text(batcher)));

  await app.listen({ host: options.host, port: options.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  let drained: Promise<void> | undefined;
  return {
    app,
    url: `http://${options.host}:${port}`,
    deployment: loaded.deployment,
    drain: () =>
      (drained ??= (async () => {
        draining = true;
        // close() stops accepting and waits for the requests in flight (their LLM pairs included).
        await app.close();
        await batcher.drain();
        await loaded.close();
      })()),
  };
}
