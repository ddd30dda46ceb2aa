/**
 * Routing one relevance request across the three tiers (deployment.ts): the head cache, the
 * distilled model, the LLM. Every pair gets an answer: a pair whose LLM answer misses its deadline,
 * or that the LLM could not grade, gets the distilled answer, marked with why.
 */
import type { KnowledgeGraph } from '../relevance/kg.ts';
import type { QueryLogIndex } from '../relevance/query-log.ts';
import { normalise } from '../relevance/text.ts';
import type { Grade, Item } from '../relevance/types.ts';
import type { DynamicBatcher } from './batcher.ts';
import { CacheUnavailableError, type HeadCache } from './cache.ts';
import { judgeItems, type Contribution, type DeepBowJudgement, type DeepBowModel } from './deepbow.ts';
import { routingTier, type Deployment } from './deployment.ts';
import type { LlmJudgement, PairToJudge } from './llm-judge.ts';

export type Tier = 'cache' | 'distilled' | 'llm';
/** Why a pair was answered by a lower tier than planned: the LLM's deadline or failure, or a cache that could not be reached. */
export type Fallback = 'deadline' | 'llm_no_answer' | 'llm_error' | 'cache-unavailable';

export interface PairResult {
  id?: string;
  grade: Grade;
  probabilities: Record<Grade, number> | null;
  tier: Tier;
  reasons: string[];
  /** Set when a lower tier answered than planned: the LLM was asked but the distilled answer was returned, or the cache was down. */
  fallback?: Fallback;
}

export interface RouterParts {
  deployment: Deployment;
  cache: HeadCache;
  distilled: DeepBowModel;
  /** The knowledge graph, for a distilled model that weighs its features. */
  kg?: KnowledgeGraph;
  queryLog: QueryLogIndex;
  llm: DynamicBatcher<PairToJudge, LlmJudgement>;
  /** Called once per answered pair, for metrics. */
  onPair?(tier: Tier, seconds: number, fallback?: Fallback): void;
}

/** Thrown when the LLM queue cannot take the request's uncertain pairs: the server answers 429. */
export class QueueFullError extends Error {
  constructor(readonly retryAfterSeconds: number) {
    super('the LLM tier is at capacity');
  }
}

/** A distilled answer's reasons: each word's and knowledge-graph feature's part in the score. */
export function wordReasons(reasons: readonly Contribution[]): string[] {
  return reasons.map((r) => {
    const sign = r.value >= 0 ? '+' : '-';
    const synonym = r.from !== undefined ? ` (via "${r.from}")` : '';
    const what = r.kind === 'feature' ? 'kg' : r.kind === 'match' ? 'matched' : 'missing';
    return `${what} "${r.term}"${synonym} ${sign}${Math.abs(r.value).toFixed(3)}`;
  });
}

function fromDistilled(id: string | undefined, j: DeepBowJudgement, fallback?: Fallback): PairResult {
  return { ...(id !== undefined ? { id } : {}), grade: j.grade, probabilities: j.probabilities, tier: 'distilled', reasons: wordReasons(j.reasons), ...(fallback ? { fallback } : {}) };
}

export async function routeRequest(parts: RouterParts, query: string, items: readonly Item[]): Promise<PairResult[]> {
  const started = performance.now();
  const { route, llm } = parts.deployment;
  const elapsed = () => (performance.now() - started) / 1000;
  const results: (PairResult | undefined)[] = new Array(items.length);

  // A cache that cannot be reached is a miss for every item, answered by the other tiers and marked.
  let cacheDown: Fallback | undefined;
  const cached = await parts.cache.lookup(query, items).catch((error: unknown) => {
    if (!(error instanceof CacheUnavailableError)) throw error;
    cacheDown = 'cache-unavailable';
    return items.map(() => undefined);
  });
  const misses: number[] = [];
  const hitsAt = elapsed();
  cached.forEach((hit, i) => {
    if (!hit) return void misses.push(i);
    const id = (items[i] as Item).id;
    const result: PairResult = { grade: hit.grade, probabilities: hit.probabilities, tier: 'cache', reasons: hit.reasons };
    if (id !== undefined) result.id = id;
    results[i] = result;
    parts.onPair?.('cache', hitsAt);
  });
  if (misses.length === 0) return results as PairResult[];

  const distilled = judgeItems(parts.distilled, query, misses.map((i) => items[i] as Item), parts.kg);
  const tier = routingTier(parts.queryLog.get(normalise(query)));
  const mayAskLlm = route.llmTiers.includes(tier);
  const uncertain: number[] = [];
  misses.forEach((i, k) => {
    const j = distilled[k] as DeepBowJudgement;
    if (mayAskLlm && j.confidence < route.minConfidence) uncertain.push(k);
    else {
      results[i] = fromDistilled((items[i] as Item).id, j, cacheDown);
      parts.onPair?.('distilled', elapsed(), cacheDown);
    }
  });
  if (uncertain.length === 0) return results as PairResult[];

  if (!parts.llm.canAccept(uncertain.length)) throw new QueueFullError(parts.llm.retryAfterSeconds());
  await Promise.all(
    uncertain.map(async (k) => {
      const i = misses[k] as number;
      const item = items[i] as Item;
      const outcome = await parts.llm.submit({ id: `${i}`, query, item }, llm.deadlineMs);
      const fallback: Fallback | undefined = 'timedOut' in outcome ? 'deadline' : 'error' in outcome ? 'llm_error' : outcome.value.grade === null ? 'llm_no_answer' : undefined;
      if (fallback || !('value' in outcome) || outcome.value.grade === null) {
        results[i] = fromDistilled(item.id, distilled[k] as DeepBowJudgement, fallback);
        parts.onPair?.('distilled', elapsed(), fallback);
        return;
      }
      const j = outcome.value;
      results[i] = { ...(item.id !== undefined ? { id: item.id } : {}), grade: j.grade as Grade, probabilities: j.probabilities, tier: 'llm', reasons: j.reasoning, ...(cacheDown ? { fallback: cacheDown } : {}) };
      parts.onPair?.('llm', elapsed(), cacheDown);
    }),
  );
  return results as PairResult[];
}
