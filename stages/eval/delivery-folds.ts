/**
 * Folds of the delivered judge's fitting examples (dev): by query, so no query is on both sides of a
 * fold, and balanced by pair count and grade. Dealing shuffled queries round-robin made Chorus's
 * dev folds 51/94/94/38/17 pairs (14 queries of 17 to 51 pairs each): a 17-pair fold scores its
 * settings on a handful of pairs, and a fold missing a grade fits cut points that never predict it.
 *
 * Greedy balancing (largest query first, into the fold where it adds the least squared excess over
 * the per-fold targets of pairs and of each grade's pairs) is the usual heuristic for grouped,
 * stratified folds (scikit-learn's StratifiedGroupKFold does the same); it is written here because
 * no npm package does grouped, stratified folds, and it is a dozen lines.
 */
import { GRADES, type Grade } from '../lib/relevance/types.ts';

/**
 * Fold of each example, 0..count-1: every query's pairs in one fold; queries taken largest first
 * (ties in the order `random` shuffles them), each into the fold where Σ over pairs and grades of
 * (fold's count after adding − target)² is smallest, the target being the total over `count`.
 */
export function balancedQueryFolds(examples: readonly { query: string; label: Grade }[], count: number, random: () => number): number[] {
  const byQuery = new Map<string, number[]>();
  examples.forEach((e, i) => byQuery.set(e.query, [...(byQuery.get(e.query) ?? []), i]));
  const queries = [...byQuery.keys()].sort();
  // Fisher–Yates with the seeded stream: the tie order among queries of equal size.
  for (let i = queries.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [queries[i], queries[j]] = [queries[j] as string, queries[i] as string];
  }
  queries.sort((a, b) => (byQuery.get(b) as number[]).length - (byQuery.get(a) as number[]).length);
  // Per fold: pairs, then pairs of each grade.
  const gradeCounts = (rows: readonly number[]) => [rows.length, ...GRADES.map((g) => rows.filter((i) => (examples[i] as { label: Grade }).label === g).length)];
  const targets = gradeCounts(examples.map((_, i) => i)).map((n) => n / count);
  const folds = Array.from({ length: count }, () => targets.map(() => 0));
  const foldOf = new Array<number>(examples.length).fill(0);
  for (const query of queries) {
    const rows = byQuery.get(query) as number[];
    const adds = gradeCounts(rows);
    const cost = (fold: number[]) => fold.reduce((sum, n, k) => sum + (n + (adds[k] as number) - (targets[k] as number)) ** 2 - (n - (targets[k] as number)) ** 2, 0);
    let best = 0;
    for (let f = 1; f < count; f++) if (cost(folds[f] as number[]) < cost(folds[best] as number[]) - 1e-12) best = f;
    const chosen = folds[best] as number[];
    adds.forEach((n, k) => (chosen[k] = (chosen[k] as number) + n));
    for (const i of rows) foldOf[i] = best;
  }
  return foldOf;
}
