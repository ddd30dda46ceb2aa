/**
 * `pipeline serve`: the judge over HTTP (Fastify, JSON-schema validation, pino's JSON logs).
 *
 *   POST /v1/relevance          {query, items[]} -> {results: [{id?, grade, probabilities, tier, reasons, fallback?}]}
 *   POST /v1/search             {query, k?, rewrite?} -> rewrites, retrieved items and their grades (search-routes.ts; with `retrieval`)
 *   POST /v1/embeddings         OpenAI-compatible (embedding-routes.ts; with `embedder`)
 *   POST /v1/chat/completions   OpenAI-compatible, through the LLM tier (openai-routes.ts)
 *   POST /v1/completions        OpenAI-compatible raw-prompt completions
 *   GET  /v1/models[/{id}]      the served checkpoint
 *   GET  /healthz               ok, with what each tier holds
 *   GET  /metrics               Prometheus text (prometheus.ts)
 *
 * Every error is OpenAI's error object (api-errors.ts): 400 for anything the client can fix, naming
 * the key path in `param` (a malformed body, a blank or control-character text, a prompt over the
 * context); 401 a missing or wrong API key (when one is set); 404 an unknown route or model; 405 a
 * known route with another method; 413 a body over the limit; 415 an unsupported Content-Encoding
 * or Content-Type; 429 (with Retry-After) a full LLM queue; 503 a server that is draining.
 * Per-request log lines are off unless `accessLog` asks for them: the counters in /metrics say
 * what they would, at a fraction of the cost.
 */
import { registerEmbeddingRoutes, type Embedder } from './embedding-routes.ts';
import { registerSearchRoutes, type QueryRewriter, type SearchIndex } from './search-routes.ts';
import { timingSafeEqual } from 'node:crypto';
import Fastify, { LogController, type FastifyError, type FastifyInstance } from 'fastify';
import { GRADES } from '../relevance/types.ts';
import type { Item } from '../relevance/types.ts';
import { ApiError, apiErrorBody, invalidRequest, typeOfStatus } from './api-errors.ts';
import type { DynamicBatcher } from './batcher.ts';
import { acceptJsonBodies, checkTextFields } from './http-input.ts';
import type { LoadedDeployment } from './load-deployment.ts';
import type { ServingMetrics } from './prometheus.ts';
import { modelCard, registerOpenAiRoutes } from './openai-routes.ts';
import { QueueFullError, routeRequest, type RouterParts } from './router.ts';
import { routingTier } from './deployment.ts';
import { normalise } from '../relevance/text.ts';
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
  /** One log line per request (pino's "incoming request" / "request completed"); off by default. */
  accessLog?: boolean;
  /** When set, every /v1 request must carry `Authorization: Bearer <apiKey>` (401 otherwise). */
  apiKey?: string;
  /** When set, POST /v1/embeddings answers with it (embedding-routes.ts). */
  embedder?: Embedder;
  /** When set, POST /v1/search retrieves from this index (rewriting long-tail queries with `rewriter`) and judges what it finds. */
  retrieval?: { index: SearchIndex; rewriter?: QueryRewriter; maxK: number };
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

/** JSON pointer "/items/0/title" -> key path "items[0].title". */
export function keyPath(pointer: string, missing?: string): string {
  const parts = pointer.split('/').filter((p) => p !== '');
  if (missing !== undefined) parts.push(missing);
  return parts.reduce((path, part) => (/^\d+$/.test(part) ? `${path}[${part}]` : path === '' ? part : `${path}.${part}`), '');
}

// No type coercion and no silent removal of unknown keys: a wrong type or key is a 400 naming it.
export const fastifyOptions = (options: Pick<ServerOptions, 'logger' | 'bodyLimit' | 'accessLog'>) => ({
  logger: options.logger,
  logController: new LogController({ disableRequestLogging: options.accessLog !== true }),
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

/** The methods each route answers; another method on one of these paths is a 405 with Allow. */
const ROUTES: Record<string, string[]> = {
  '/v1/relevance': ['POST'],
  '/v1/chat/completions': ['POST'],
  '/v1/completions': ['POST'],
  '/v1/models': ['GET'],
  '/v1/models/:id': ['GET'],
  '/healthz': ['GET'],
  '/metrics': ['GET'],
};
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];

/** Whether the request carries the key (compared in constant time, so its bytes cannot be timed out of the server). */
function authorised(header: string | undefined, apiKey: string): boolean {
  const given = Buffer.from(/^Bearer\s+(.+)$/i.exec(header ?? '')?.[1]?.trim() ?? '');
  const wanted = Buffer.from(apiKey);
  return given.length === wanted.length && timingSafeEqual(given, wanted);
}

export async function startServer(loaded: LoadedDeployment, batcher: DynamicBatcher<PairToJudge, LlmJudgement>, metrics: ServingMetrics, options: ServerOptions): Promise<RunningServer> {
  const app = Fastify(fastifyOptions(options));
  acceptJsonBodies(app);
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
    if (draining) return reply.code(503).header('connection', 'close').send(apiErrorBody('the server is shutting down', 'service_unavailable', 'draining'));
    if (options.apiKey !== undefined && request.url.startsWith('/v1/') && !authorised(request.headers.authorization, options.apiKey)) {
      const message = request.headers.authorization === undefined ? 'Missing API key: send it as Authorization: Bearer <key>' : 'Incorrect API key provided';
      return reply.code(401).header('www-authenticate', 'Bearer').send(apiErrorBody(message, 'authentication_error', 'invalid_api_key'));
    }
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    const started = (request as { started?: number }).started ?? performance.now();
    metrics.request(request.routeOptions.url ?? 'unknown', reply.statusCode, (performance.now() - started) / 1000);
    done();
  });

  app.setErrorHandler((error: FastifyError | ApiError, request, reply) => {
    if (error instanceof ApiError) {
      if (error.statusCode >= 500) request.log.error(error);
      return reply.code(error.statusCode).headers(error.headers).send(error.body);
    }
    if (error.validation) {
      const first = error.validation[0];
      const params = (first?.params ?? {}) as { missingProperty?: string; additionalProperty?: string };
      const path = keyPath(first?.instancePath ?? '', params.missingProperty ?? params.additionalProperty);
      return reply.code(400).send(invalidRequest(path, first?.message ?? error.message).body);
    }
    if (error.statusCode === 413) return reply.code(413).send(apiErrorBody(`the body is over ${options.bodyLimit} bytes`, 'invalid_request_error', 'body_too_large'));
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      // Fastify's own client errors (a body that is not JSON, an unsupported Content-Type): not logged as the server's.
      return reply.code(error.statusCode).send(apiErrorBody(error.message, typeOfStatus(error.statusCode), error.code ?? 'bad_request'));
    }
    request.log.error(error);
    return reply.code(500).send(apiErrorBody(error.message, 'server_error', 'internal_error'));
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send(apiErrorBody(`no route ${request.method} ${request.url}`, 'invalid_request_error', 'unknown_route')));
  const routes = { ...ROUTES, ...(options.embedder ? { '/v1/embeddings': ['POST'] } : {}), ...(options.retrieval ? { '/v1/search': ['POST'] } : {}) };
  for (const [url, allowed] of Object.entries(routes)) {
    const others = METHODS.filter((m) => !allowed.includes(m) && !(m === 'HEAD' && allowed.includes('GET')));
    app.route({
      method: others,
      url,
      handler: async (request, reply) => reply.code(405).header('allow', allowed.join(', ')).send(apiErrorBody(`${request.method} is not allowed on ${url}: use ${allowed.join(' or ')}`, 'invalid_request_error', 'method_not_allowed')),
    });
  }

  /** The tiers' answers for the pairs, a full LLM queue as a 429 with Retry-After. */
  const judge = async (query: string, items: readonly Item[]) => {
    try {
      return await routeRequest(parts, query, items);
    } catch (error) {
      if (error instanceof QueueFullError) {
        throw new ApiError(429, `${error.message}; retry after ${error.retryAfterSeconds} s`, 'rate_limit_error', 'queue_full', null, { 'retry-after': String(error.retryAfterSeconds) });
      }
      throw error;
    }
  };

  app.post<{ Body: { query: string; items: Item[] } }>(
    '/v1/relevance',
    { schema: relevanceSchema(options.maxItems) },
    async (request, reply) => {
      // The query and titles must say something; no text may carry control characters.
      checkTextFields(request.body, (path) => path === 'query' || /^items\[\d+\]\.title$/.test(path));
      const items = request.body.items.map((item) => ({ ...item, category: item.category ?? [], attributes: item.attributes ?? {} }));
      return { results: await judge(request.body.query, items) };
    },
  );
  if (options.retrieval) {
    registerSearchRoutes(app, { ...options.retrieval, tierOf: (query) => routingTier(loaded.queryLog.get(normalise(query))), judge }, (body) => checkTextFields(body, (path) => path === 'query'));
  }

  registerOpenAiRoutes(app, { loaded, metrics, retryAfterSeconds: () => batcher.retryAfterSeconds() });
  if (options.embedder) registerEmbeddingRoutes(app, options.embedder);
  app.get('/v1/models', async () => ({ object: 'list', data: [modelCard(loaded)] }));
  app.get('/healthz', async () => {
    const cache = loaded.headCache.health();
    return {
      // degraded: still answering, from the distilled and LLM tiers while the cache is away.
      status: draining ? 'draining' : cache.available ? 'ok' : 'degraded',
      model: loaded.modelName,
      tiers: {
        cache: { kind: loaded.deployment.cache.kind, entries: loaded.cacheEntries, available: cache.available, ...(cache.problem ? { problem: cache.problem } : {}) },
        distilled: { words: Object.keys(loaded.distilled.query).length },
        llm: { backend: loaded.llm.engine.backend, queued: batcher.queued },
      },
      route: { minConfidence: loaded.deployment.route.minConfidence, llmTiers: loaded.deployment.route.llmTiers },
      grades: GRADES,
    };
  });
  app.get('/metrics', async (_request, reply) => reply.header('content-type', metrics.contentType).send(await metrics.text(batcher, loaded.llm.chatStats)));

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
        await options.retrieval?.rewriter?.close?.();
        await loaded.close();
      })()),
  };
}
