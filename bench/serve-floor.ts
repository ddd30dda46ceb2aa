/**
 * The floor under the cache tier's latency, for bench/serve.ts: Fastify with the server's own
 * options and `POST /v1/relevance` schemas (body validation, compiled response serialiser), that
 * answers every item with one fixed cache-tier result, without routing, cache lookups or metrics.
 * Driven like the server, in the same run, it says what HTTP, JSON and loopback cost on this
 * machine right now, so the server's figure can be read against it.
 *
 *   node --import tsx bench/serve-floor.ts <body-limit> <max-items> '<result JSON>'
 *
 * Prints `floor on http://127.0.0.1:<port>` once listening; exits on SIGTERM.
 */
import Fastify from 'fastify';
import type { PairResult } from '../stages/lib/serving/router.ts';
import { fastifyOptions, relevanceSchema } from '../stages/lib/serving/server.ts';
import type { Item } from '../stages/lib/relevance/types.ts';

const [bodyLimit, maxItems, resultJson] = process.argv.slice(2);
if (bodyLimit === undefined || maxItems === undefined || resultJson === undefined) throw new Error('usage: serve-floor.ts <body-limit> <max-items> <result JSON>');
const result = JSON.parse(resultJson) as PairResult;
const app = Fastify(fastifyOptions({ logger: false, bodyLimit: Number(bodyLimit) }));
app.post<{ Body: { query: string; items: Item[] } }>('/v1/relevance', { schema: relevanceSchema(Number(maxItems)) }, async (request) => ({
  results: request.body.items.map((item) => ({ ...result, ...(item.id !== undefined ? { id: item.id } : {}) })),
}));
await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
console.log(`floor on http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`);
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
