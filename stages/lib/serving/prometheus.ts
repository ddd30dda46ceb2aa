/**
 * The server's Prometheus metrics (prom-client): requests by route and status with a latency
 * histogram, pairs answered per tier with a latency histogram per tier (a pair's tier is where its
 * answer came from: a cache hit, the distilled model, or the LLM), deadline and error fallbacks,
 * and the LLM queue. Each server has its own registry, so two servers in one process never mix.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { BatcherStats } from './batcher.ts';
import type { Fallback, Tier } from './router.ts';

// Seconds: from well under a millisecond (cache, distilled) to the LLM's seconds.
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** How a request ended: cancelled is a client that went away before its answer (status 499, nginx's "client closed request"). */
export type Outcome = 'ok' | 'client_error' | 'server_error' | 'cancelled';
const outcomeOf = (status: number): Outcome => (status >= 500 ? 'server_error' : status >= 400 ? 'client_error' : 'ok');

export interface ServingMetrics {
  contentType: string;
  /** One answered request; `outcome` defaults to what the status says (ok, client_error, server_error). */
  request(route: string, status: number, seconds: number, outcome?: Outcome): void;
  pair(tier: Tier, seconds: number, fallback?: Fallback): void;
  text(llm: { queued: number; stats: BatcherStats }, chats: { chats: number; batches: number }): Promise<string>;
}

export function servingMetrics(): ServingMetrics {
  const registry = new Registry();
  const requests = new Counter({ name: 'lore_requests_total', help: 'HTTP requests, by route, status and outcome (cancelled: the client went away first)', labelNames: ['route', 'status', 'outcome'], registers: [registry] });
  const requestSeconds = new Histogram({ name: 'lore_request_duration_seconds', help: 'HTTP request latency, by route', labelNames: ['route'], buckets: BUCKETS, registers: [registry] });
  const pairs = new Counter({ name: 'lore_pairs_total', help: 'Query-item pairs answered, by the tier that answered (cache = a head-cache hit)', labelNames: ['tier'], registers: [registry] });
  const pairSeconds = new Histogram({ name: 'lore_pair_duration_seconds', help: 'Time from request start to a pair\'s answer, by tier', labelNames: ['tier'], buckets: BUCKETS, registers: [registry] });
  const fallbacks = new Counter({ name: 'lore_llm_fallbacks_total', help: 'Pairs answered by a lower tier than planned, by reason (an LLM deadline or failure; cache-unavailable: the head cache could not be reached)', labelNames: ['reason'], registers: [registry] });
  const queued = new Gauge({ name: 'lore_llm_queue_pairs', help: 'Pairs waiting for an LLM batch', registers: [registry] });
  const batches = new Gauge({ name: 'lore_llm_batches', help: 'LLM batches decoded since start', registers: [registry] });
  const chatBatches = new Gauge({ name: 'lore_llm_chat_batches', help: 'Batches the chat and completion requests were generated in, since start', registers: [registry] });
  const chatsGenerated = new Gauge({ name: 'lore_llm_chats', help: 'Chat and completion requests generated (cancelled ones dropped before their batch excluded), since start', registers: [registry] });
  const batchedPairs = new Gauge({ name: 'lore_llm_batched_pairs', help: 'Pairs decoded in LLM batches since start', registers: [registry] });
  // Labelled children made once per tier and per route and status: labelling on every call hashes
  // the labels each time, and a cache hit counts one pair per item.
  const routeChildren = new Map<string, { requests: { inc(): void }; seconds: { observe(value: number): void } }>();
  const tierChildren = new Map<Tier, { pairs: { inc(): void }; seconds: { observe(value: number): void } }>();
  const tierChild = (tier: Tier) => {
    let child = tierChildren.get(tier);
    if (!child) tierChildren.set(tier, (child = { pairs: pairs.labels(tier), seconds: pairSeconds.labels(tier) }));
    return child;
  };
  return {
    contentType: registry.contentType,
    request(route, status, seconds, outcome = outcomeOf(status)) {
      const key = `${route} ${status} ${outcome}`;
      let child = routeChildren.get(key);
      if (!child) routeChildren.set(key, (child = { requests: requests.labels(route, String(status), outcome), seconds: requestSeconds.labels(route) }));
      child.requests.inc();
      child.seconds.observe(seconds);
    },
    pair(tier, seconds, fallback) {
      const child = tierChild(tier);
      child.pairs.inc();
      child.seconds.observe(seconds);
      if (fallback) fallbacks.inc({ reason: fallback });
    },
    async text(llm, chats) {
      chatBatches.set(chats.batches);
      chatsGenerated.set(chats.chats);
      queued.set(llm.queued);
      batches.set(llm.stats.batches);
      batchedPairs.set(llm.stats.pairs);
      return registry.metrics();
    },
  };
}
