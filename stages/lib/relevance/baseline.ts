/**
 * The lexical baseline every learned judge must beat: how much of the query (weighted by BM25's
 * IDF over the train items) the item's text covers, cut into four grades by thresholds tuned on dev
 * for macro-F1. `lexicalBaseline(train, dev)` fits; the result scores and predicts any example.
 */
import { Bm25, bm25Terms } from './bm25.ts';
import { GRADES, type Grade, type RelevanceExample } from './types.ts';

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
  const fitted = fitCutPoints(dev.map((e) => ({ score: score(e), gold: e.label })));
  return { thresholds: fitted.thresholds, tuningMacroF1: fitted.macroF1, score, predict: (e) => gradeFor(score(e), fitted.thresholds) };
}

/**
 * Ordinal cut points on a score for the best macro-F1 on `scored` (`gradeFor` reads them): an
 * exhaustive search over ordered triples of at most `maxPoints` candidate points (~2,000 triples at
 * 24), ties to the first found. The lexical baseline's thresholds and eval's delivered judge's cut
 * points on the expected grade are fitted with it. Each triple is scored from per-grade counts
 * below each point (prefix sums), not by re-grading every example, so a fit costs O(n log n + P^3)
 * and cross-fitting hundreds of candidates stays cheap. Macro-F1 is computed as
 * classificationMetrics computes it (over the grades gold has).
 */
export function fitCutPoints(scored: readonly { score: number; gold: Grade }[], maxPoints = 24): { thresholds: [number, number, number]; macroF1: number } {
  if (scored.length === 0) throw new Error('fitCutPoints: no examples to fit the cut points on');
  const points = cutPoints(scored.map((e) => e.score), maxPoints);
  const sorted = [...scored].sort((a, b) => a.score - b.score);
  // below[j][g]: examples of gold grade g whose score is < points[j].
  const below: number[][] = [];
  let i = 0;
  const running = GRADES.map(() => 0);
  for (const point of points) {
    for (; i < sorted.length && (sorted[i] as { score: number }).score < point; i++) running[GRADES.indexOf((sorted[i] as { gold: Grade }).gold)]!++;
    below.push([...running]);
  }
  const support = GRADES.map((_, g) => scored.filter((e) => e.gold === GRADES[g]).length);
  const present = GRADES.map((_, g) => g).filter((g) => (support[g] as number) > 0);
  const bins = [GRADES.map(() => 0), GRADES.map(() => 0), GRADES.map(() => 0), GRADES.map(() => 0)];
  let best: { thresholds: [number, number, number]; macroF1: number } = { thresholds: [0.25, 0.5, 0.75], macroF1: -1 };
  for (let a = 0; a < points.length; a++) {
    for (let b = a; b < points.length; b++) {
      for (let c = b; c < points.length; c++) {
        const [A, B, C] = [below[a] as number[], below[b] as number[], below[c] as number[]];
        for (let g = 0; g < GRADES.length; g++) {
          (bins[0] as number[])[g] = A[g] as number;
          (bins[1] as number[])[g] = (B[g] as number) - (A[g] as number);
          (bins[2] as number[])[g] = (C[g] as number) - (B[g] as number);
          (bins[3] as number[])[g] = (support[g] as number) - (C[g] as number);
        }
        let sum = 0;
        for (const g of present) {
          const bin = bins[g] as number[];
          const predictedAs = bin.reduce((x, y) => x + y, 0);
          const precision = predictedAs === 0 ? 0 : (bin[g] as number) / predictedAs;
          const recall = (bin[g] as number) / (support[g] as number);
          sum += precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
        }
        const macroF1 = sum / present.length;
        if (macroF1 > best.macroF1) best = { thresholds: [points[a] as number, points[b] as number, points[c] as number], macroF1 };
      }
    }
  }
  return best;
}
