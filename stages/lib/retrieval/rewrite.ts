/**
 * BEQUE's selection of query rewrites (Peng et al. 2024, "Large Language Model based Long-tail
 * Query Rewriting in Taobao Search", §3.2–3.3), as functions over retrieved sets:
 * - rejection sampling: a rewrite is kept when its retrieved set holds more relevant items than the
 *   original query's (relevance as the judgements and the judge say);
 * - offline feedback: each rewrite's retrieval scored by the relevant items it gains over the
 *   original's set and by the judged relevance of its whole set;
 * - partial order: rewrites ranked by that feedback, every strictly better–worse pair a preference
 *   pair for DPO-style alignment (BEQUE's partial-order objective compares all ordered pairs);
 * - serving: the original query's ranking and the rewrites' merged by reciprocal-rank fusion.
 * The rewrite stage (stages/rewrite) builds the candidates, selects them with these rules and
 * trains the rewriter on what they keep (stages/rewrite/train.ts).
 */
import type { Rng } from '../../../pipeline/api.ts';
import type { Policy } from '../judge/model.ts';
import { bm25Terms } from '../relevance/bm25.ts';
import { reciprocalRankFusion } from './fusion.ts';

export interface RewriteFeedback {
  rewrite: string;
  /** Relevant items among the rewrite's first K. */
  relevant: number;
  /** Relevant items among its first K that the original's first K lacks. */
  gained: number;
  /** Mean graded relevance of its first K (grade index 0–3, unlabelled items 0). */
  setRelevance: number;
}

/** `grade(key)`: the item's grade index 0–3 (L1–L4) for the query, or undefined if nobody labelled it. */
export function rewriteFeedback(original: readonly string[], rewrite: { text: string; retrieved: readonly string[] }, k: number, grade: (key: string) => number | undefined): RewriteFeedback {
  const relevant = (key: string) => (grade(key) ?? 0) >= 2;
  const originalRelevant = new Set(original.slice(0, k).filter(relevant));
  const top = [...new Set(rewrite.retrieved.slice(0, k))];
  const relevantTop = top.filter(relevant);
  return {
    rewrite: rewrite.text,
    relevant: relevantTop.length,
    gained: relevantTop.filter((key) => !originalRelevant.has(key)).length,
    setRelevance: top.length === 0 ? 0 : top.reduce((sum, key) => sum + (grade(key) ?? 0), 0) / top.length,
  };
}

/** The rejection rule: kept when the rewrite's first K hold more relevant items than the original's. */
export function keepRewrite(original: readonly string[], feedback: RewriteFeedback, k: number, grade: (key: string) => number | undefined): boolean {
  const originalRelevant = [...new Set(original.slice(0, k))].filter((key) => (grade(key) ?? 0) >= 2).length;
  return feedback.relevant > originalRelevant;
}

/** Rewrites best first by (relevant, gained, set relevance); the preference pairs of that partial order. */
export function partialOrderPairs(feedback: readonly RewriteFeedback[]): { chosen: string; rejected: string }[] {
  const better = (a: RewriteFeedback, b: RewriteFeedback) =>
    a.relevant > b.relevant || (a.relevant === b.relevant && (a.gained > b.gained || (a.gained === b.gained && a.setRelevance > b.setRelevance)));
  const pairs: { chosen: string; rejected: string }[] = [];
  for (const a of feedback) for (const b of feedback) if (better(a, b)) pairs.push({ chosen: a.rewrite, rejected: b.rewrite });
  return pairs;
}

/** The served ranking: the original query's and its rewrites' rankings merged (original first on ties). */
export function mergeRewrites(original: readonly string[], rewrites: readonly (readonly string[])[], k: number): string[] {
  return reciprocalRankFusion([original, ...rewrites]).slice(0, k);
}

/**
 * The candidate rewrites rejection sampling chooses among for one query: the given ones (the
 * reasoning model's analysis), then the query with one term left out. BEQUE samples candidates
 * from its LLM (§3.2); the project's decoder is too small for its samples to be worth judging
 * before it is trained, and dropping a term is the relaxation a long-tail query most often needs
 * (BEQUE §1: long-tail queries carry words the catalog's titles lack). Distinct from the query
 * and each other after normalisation; queries of one term get none of their own.
 */
export function candidateRewrites(query: string, given: readonly string[], normalise: (text: string) => string): string[] {
  const terms = query.trim().split(/\s+/);
  const dropped = terms.length < 2 ? [] : terms.map((_, i) => terms.filter((__, j) => j !== i).join(' '));
  const seen = new Set([normalise(query)]);
  return [...given, ...dropped].filter((candidate) => {
    const key = normalise(candidate);
    if (key === '' || seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** What the rewriter reads before it writes a rewrite (and what it was trained on). */
export function rewritePrompt(query: string): string {
  return `rewrite: ${query}\n`;
}

/** A rewrite ends at the line's end (or the end-of-sequence token). */
export const REWRITE_STOPS = ['\n'];

/** The trained rewriter's greedy rewrite of each query ('' where it wrote nothing usable). */
export async function generateRewrites(policy: Policy, queries: readonly string[], options: { maxNewTokens: number; rng: Rng; signal?: AbortSignal }): Promise<string[]> {
  const { greedyTexts } = await import('../judge/model.ts');
  const generations = await greedyTexts(policy, queries.map(rewritePrompt), { maxNewTokens: options.maxNewTokens, stops: REWRITE_STOPS, rng: options.rng, ...(options.signal ? { signal: options.signal } : {}) });
  return generations.map((g) => (g.text ?? '').split(REWRITE_STOPS[0] as string)[0]!.trim());
}

/**
 * The rewrites of `query` worth serving: non-empty, not the query again (after `normalise`), and
 * sharing at least one search term with it. BEQUE asks a rewrite to keep the query's meaning
 * (§3.1, semantic consistency); a small rewriter's greedy output for a query unlike its training
 * set can be unrelated text ("hoodie t" for "headset"), which would only pull foreign items into
 * the merged ranking, so a rewrite with no term of the query is dropped.
 */
export function servedRewrites(query: string, rewrites: readonly string[], normalise: (text: string) => string): string[] {
  const queryTerms = new Set(bm25Terms(query));
  const seen = new Set([normalise(query)]);
  return rewrites.filter((rewrite) => {
    const key = normalise(rewrite);
    if (key === '' || seen.has(key)) return false;
    seen.add(key);
    return bm25Terms(rewrite).some((term) => queryTerms.has(term));
  });
}
