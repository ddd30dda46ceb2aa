/**
 * POST /v1/search: query → rewritten query → retrieved items → judged grades, the retrieval half
 * and the judge in one request.
 *
 *   {query, k?: 1..maxK (10), rewrite?: boolean (true)}
 *   -> {object: 'search.result', query, query_tier, rewrites, results: [{rank, id, title, grade,
 *       probabilities, tier, reasons, fallback?}]}
 *
 * Retrieval is BM25 over an index stage's catalog (stages/index: catalog.jsonl). A long-tail query
 * (tier tail or new in the deployment's query log: BEQUE rewrites the long tail only) is rewritten
 * by the rewrite stage's trained rewriter, and its BM25 ranking and each rewrite's are merged by
 * reciprocal-rank fusion, as retrieve's `bm25+rewrite` serves them (stages/lib/retrieval/rewrite.ts).
 * The retrieved items are then judged for the original query by the server's tiers (cache,
 * distilled, LLM), exactly as POST /v1/relevance judges them.
 */
import type { FastifyInstance } from 'fastify';
import { Bm25, bm25Terms } from '../relevance/bm25.ts';
import type { Item } from '../relevance/types.ts';
import { itemText, type CatalogEntry } from '../retrieval/catalog.ts';
import { mergeRewrites } from '../retrieval/rewrite.ts';
import type { RoutingTier } from './deployment.ts';
import type { PairResult } from './router.ts';

/** Items each ranking (the query's, each rewrite's) is read to before merging: retrieve's default `k`. */
export const SEARCH_DEPTH = 100;

export interface QueryRewriter {
  /** The rewrite stage it comes from (for /healthz and the log). */
  source: string;
  rewrite(query: string): Promise<string[]>;
  /** Releases the model, when it holds one. */
  close?(): Promise<void>;
}

export interface SearchIndex {
  /** The index stage it comes from. */
  source: string;
  catalog: readonly CatalogEntry[];
  /** Characters of an item's description BM25 reads after its title. */
  descriptionChars: number;
}

export interface SearchParts {
  index: SearchIndex;
  rewriter?: QueryRewriter;
  /** Largest `k` a request may ask for. */
  maxK: number;
  tierOf(query: string): RoutingTier;
  judge(query: string, items: readonly Item[]): Promise<PairResult[]>;
}

/** Tiers whose queries are rewritten: BEQUE targets the long tail, and a query never seen is rarer still. */
export const REWRITTEN_TIERS: readonly RoutingTier[] = ['tail', 'new'];

const searchSchema = (maxK: number) => ({
  body: {
    type: 'object',
    required: ['query'],
    additionalProperties: false,
    properties: {
      query: { type: 'string', minLength: 1 },
      k: { type: 'integer', minimum: 1, maximum: maxK },
      rewrite: { type: 'boolean' },
    },
  },
});

export function registerSearchRoutes(app: FastifyInstance, parts: SearchParts, checkQuery: (body: { query: string }) => void): void {
  const { catalog, descriptionChars } = parts.index;
  const bm25 = new Bm25(catalog.map((e) => bm25Terms(itemText(e.item, descriptionChars))));
  const ranking = (text: string, depth: number) => bm25.top(bm25Terms(text), depth).map((hit) => (catalog[hit.index] as CatalogEntry).key);
  const byKey = new Map(catalog.map((e) => [e.key, e.item]));
  app.post<{ Body: { query: string; k?: number; rewrite?: boolean } }>('/v1/search', { schema: searchSchema(parts.maxK) }, async (request) => {
    checkQuery(request.body);
    const { query, k = Math.min(10, parts.maxK), rewrite = true } = request.body;
    const tier = parts.tierOf(query);
    const rewrites = rewrite && parts.rewriter && REWRITTEN_TIERS.includes(tier) ? await parts.rewriter.rewrite(query) : [];
    const depth = Math.max(k, SEARCH_DEPTH);
    const own = ranking(query, depth);
    const keys = rewrites.length === 0 ? own.slice(0, k) : mergeRewrites(own, rewrites.map((text) => ranking(text, depth)), k);
    const items = keys.map((key) => {
      const item = byKey.get(key) as Item;
      return { ...item, category: item.category ?? [], attributes: item.attributes ?? {} };
    });
    const judged = items.length === 0 ? [] : await parts.judge(query, items);
    return {
      object: 'search.result',
      query,
      query_tier: tier,
      rewrites,
      results: keys.map((key, i) => {
        const { id: _id, ...judgement } = judged[i] as PairResult;
        return { rank: i + 1, id: key, title: (byKey.get(key) as Item).title, ...judgement };
      }),
    };
  });
}
