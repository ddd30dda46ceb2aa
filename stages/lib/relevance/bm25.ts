/**
 * Okapi BM25 over short texts (queries and titles). Written here rather than taken from npm
 * because both uses need what the search-engine packages (minisearch, wink-bm25) hide behind a
 * search API: the score of one given query–document pair with corpus IDF (the lexical baseline),
 * and top-k with an exclusion filter (few-shot exemplars never from the same query).
 */
import { STOP_WORDS, stem, tokenize } from './text.ts';

/** Normalised, singular, stop words out ("for", "with" would match most documents and say nothing). */
export function bm25Terms(text: string): string[] {
  return tokenize(text)
    .filter((t) => !STOP_WORDS.has(t))
    .map(stem);
}

export class Bm25 {
  private readonly docs: Map<string, number>[] = [];
  private readonly lengths: number[] = [];
  private readonly postings = new Map<string, number[]>();
  private readonly averageLength: number;

  constructor(
    documents: readonly string[][],
    private readonly k1 = 1.2,
    private readonly b = 0.75,
  ) {
    documents.forEach((terms, index) => {
      const counts = new Map<string, number>();
      for (const t of terms) counts.set(t, (counts.get(t) ?? 0) + 1);
      this.docs.push(counts);
      this.lengths.push(terms.length);
      for (const t of counts.keys()) {
        const list = this.postings.get(t);
        if (list) list.push(index);
        else this.postings.set(t, [index]);
      }
    });
    this.averageLength = this.lengths.reduce((a, b) => a + b, 0) / Math.max(1, this.lengths.length);
  }

  get size(): number {
    return this.docs.length;
  }

  /** BM25's IDF with the +1 that keeps it positive for terms in most documents. */
  idf(term: string): number {
    const n = this.postings.get(term)?.length ?? 0;
    return Math.log(1 + (this.docs.length - n + 0.5) / (n + 0.5));
  }

  /** Score of `terms` against an arbitrary bag of words, with this corpus's IDF and average length. */
  scoreTerms(queryTerms: readonly string[], docTerms: readonly string[]): number {
    const counts = new Map<string, number>();
    for (const t of docTerms) counts.set(t, (counts.get(t) ?? 0) + 1);
    return this.scoreCounts(queryTerms, counts, docTerms.length);
  }

  private scoreCounts(queryTerms: readonly string[], counts: Map<string, number>, length: number): number {
    let score = 0;
    for (const term of new Set(queryTerms)) {
      const tf = counts.get(term) ?? 0;
      if (tf === 0) continue;
      score += (this.idf(term) * tf * (this.k1 + 1)) / (tf + this.k1 * (1 - this.b + (this.b * length) / (this.averageLength || 1)));
    }
    return score;
  }

  /** The `k` best documents for `queryTerms` that `keep` accepts; ties go to the lower index. */
  top(queryTerms: readonly string[], k: number, keep: (index: number) => boolean = () => true): { index: number; score: number }[] {
    // No exemplars asked for (icl's `shots: 0`): scoring every train pair that shares a word, for
    // each of thousands of prompts, was most of the icl stage's time.
    if (k <= 0) return [];
    // Term at a time over the postings: each query term's IDF is computed once, and only documents
    // sharing a term are touched.
    const scores = new Map<number, number>();
    for (const term of new Set(queryTerms)) {
      const postings = this.postings.get(term);
      if (!postings) continue;
      const idf = this.idf(term);
      for (const index of postings) {
        const tf = (this.docs[index] as Map<string, number>).get(term) as number;
        const norm = this.k1 * (1 - this.b + (this.b * (this.lengths[index] as number)) / (this.averageLength || 1));
        scores.set(index, (scores.get(index) ?? 0) + (idf * tf * (this.k1 + 1)) / (tf + norm));
      }
    }
    const scored: { index: number; score: number }[] = [];
    for (const [index, score] of scores) if (keep(index)) scored.push({ index, score });
    scored.sort((a, b) => b.score - a.score || a.index - b.index);
    return scored.slice(0, k);
  }
}
