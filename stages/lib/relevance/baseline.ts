/**
 * The lexical baseline every learned judge must beat: how much of the query (weighted by BM25's
 * IDF over the train items) the item's text covers, cut into four grades by thresholds tuned on dev
 * for macro-F1. `lexicalBaseline(train, dev)` fits; the result scores and predicts any example.
 */
import { classificationMetrics } from '../metrics.ts';
import { Bm25, bm25Terms } from './bm25.ts';
import type { Grade, RelevanceExample } from './types.ts';

export interface LexicalBaseline {
  /** [t1, t2, t3]: score < t1 -> L1, < t2 -> L2, < t3 -> L3, else L4. */
  thresholds: [number, number, number];
  /** Macro-F1 on the tuning examples at the chosen thresholds. */
  tuningMacroF1: number;
  score(example: Pick<RelevanceExample, 'query' | 'item'>): number;
  predict(example: Pick<RelevanceExample, 'query' | 'item'>): Grade;
}

export function itemTerms(example: Pick<RelevanceExample, 'item'>): string[] {
  const { item } = example;
  return bm25Terms([item.title, item.category.join(' '), ...Object.values(item.attributes), item.description ?? '', item.image_caption ?? ''].join(' '));
}

export function gradeFor(score: number, [t1, t2, t3]: readonly number[]): Grade {
  return score < (t1 as number) ? 'L1' : score < (t2 as number) ? 'L2' : score < (t3 as number) ? 'L3' : 'L4';
}

/** Candidate cut points: midpoints between distinct dev scores, thinned to at most `count`. */
function cutPoints(scores: number[], count: number): number[] {
  const distinct = [...new Set(scores)].sort((a, b) => a - b);
  const mids = distinct.slice(1).map((s, i) => (s + (distinct[i] as number)) / 2);
  const points = [-Infinity, ...mids, Infinity];
  if (points.length <= count) return points;
  return Array.from({ length: count }, (_, i) => points[Math.round((i * (points.length - 1)) / (count - 1))] as number);
}

/**
 * The share of the query's IDF weight (over the train items) that the item's text covers, in [0, 1].
 * The baseline's score, and the icl evidence's lexical-match bucket.
 */
export function queryCoverage(train: readonly Pick<RelevanceExample, 'item'>[]): (example: Pick<RelevanceExample, 'query' | 'item'>) => number {
  const index = new Bm25(train.map(itemTerms));
  return (example) => {
    const query = [...new Set(bm25Terms(example.query))];
    const have = new Set(itemTerms(example));
    const total = query.reduce((sum, t) => sum + index.idf(t), 0);
    return total === 0 ? 0 : query.reduce((sum, t) => sum + (have.has(t) ? index.idf(t) : 0), 0) / total;
  };
}

export function lexicalBaseline(train: readonly RelevanceExample[], dev: readonly RelevanceExample[]): LexicalBaseline {
  if (dev.length === 0) throw new Error('lexicalBaseline: the dev split is empty; thresholds are tuned on dev');
  const score = queryCoverage(train);
  const devScores = dev.map(score);
  // Exhaustive search over ordered triples of cut points (at most 24 points: ~2,000 triples).
  const points = cutPoints(devScores, 24);
  let best: { thresholds: [number, number, number]; f1: number } = { thresholds: [0.25, 0.5, 0.75], f1: -1 };
  for (let a = 0; a < points.length; a++) {
    for (let b = a; b < points.length; b++) {
      for (let c = b; c < points.length; c++) {
        const thresholds: [number, number, number] = [points[a] as number, points[b] as number, points[c] as number];
        const { macroF1 } = classificationMetrics(dev.map((e, i) => ({ gold: e.label, predicted: gradeFor(devScores[i] as number, thresholds) })));
        if (macroF1 > best.f1) best = { thresholds, f1: macroF1 };
      }
    }
  }
  return { thresholds: best.thresholds, tuningMacroF1: best.f1, score, predict: (e) => gradeFor(score(e), best.thresholds) };
}
