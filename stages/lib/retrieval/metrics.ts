/**
 * Retrieval figures over a query split: Recall@K, NDCG@10, MRR and ASH@K, each with a percentile
 * bootstrap interval over queries, and the same figures per query-frequency slice.
 *
 * One query is one `RankedQuery`: the item ids it retrieved, best first, and the grades known for
 * its items (the dataset's human judgements, plus what the judge labelled among the retrieved items
 * nobody judged). An item counts as relevant when its grade is L3 or L4 (the papers' binary cut:
 * stages/lib/relevance/types.ts); an item without a grade counts as not relevant.
 */
import { mean, quantile, type Interval } from '../relevance/grade-agreement.ts';
import { isRelevant, type Grade } from '../relevance/types.ts';

export interface RankedQuery {
  queryId: string;
  query: string;
  /** Retrieved item ids, best first (only the first K count for the @K figures). */
  retrieved: readonly string[];
  /** Item id -> grade, for every item whose grade is known. */
  grades: ReadonlyMap<string, Grade>;
}

/** The relevant items of a query: its scenario in ASH's terms. */
export function relevantItems(query: Pick<RankedQuery, 'grades'>): Set<string> {
  const relevant = new Set<string>();
  for (const [id, grade] of query.grades) if (isRelevant(grade)) relevant.add(id);
  return relevant;
}

/** Share of the query's relevant items among its first `k` retrieved; null without a relevant item. */
export function recallAt(query: RankedQuery, k: number): number | null {
  const relevant = relevantItems(query);
  if (relevant.size === 0) return null;
  return hitsAt(query, relevant, k) / relevant.size;
}

function hitsAt(query: RankedQuery, relevant: ReadonlySet<string>, k: number): number {
  let hits = 0;
  for (const id of new Set(query.retrieved.slice(0, k))) if (relevant.has(id)) hits++;
  return hits;
}

/** Graded gain: L1 0, L2 1, L3 2, L4 3 (the grade's index on the four-point scale). */
const GAIN_GRADE: Record<Grade, number> = { L1: 0, L2: 1, L3: 2, L4: 3 };

/**
 * NDCG@k with exponential gain 2^g − 1 and discount 1/log2(rank + 1) (Järvelin & Kekäläinen 2002,
 * "Cumulated gain-based evaluation of IR techniques"; the 2^g − 1 gain as in Burges et al. 2005).
 * The ideal ranking is every graded item of the query sorted by grade. Null when no item has a
 * positive gain.
 */
export function ndcgAt(query: RankedQuery, k: number): number | null {
  const gains = [...query.grades.values()].map((g) => 2 ** GAIN_GRADE[g] - 1).sort((a, b) => b - a);
  const ideal = gains.slice(0, k).reduce((sum, gain, i) => sum + gain / Math.log2(i + 2), 0);
  if (ideal === 0) return null;
  let dcg = 0;
  query.retrieved.slice(0, k).forEach((id, i) => {
    const grade = query.grades.get(id);
    if (grade) dcg += (2 ** GAIN_GRADE[grade] - 1) / Math.log2(i + 2);
  });
  return dcg / ideal;
}

/** 1 / rank of the first relevant item retrieved (0 when none is); null without a relevant item. */
export function reciprocalRank(query: RankedQuery): number | null {
  const relevant = relevantItems(query);
  if (relevant.size === 0) return null;
  const rank = query.retrieved.findIndex((id) => relevant.has(id));
  return rank < 0 ? 0 : 1 / (rank + 1);
}

/**
 * ASMOL's All-Scenario Hitrate: the share of the relevant items of every scenario that the
 * returned unordered sets contain, pooled over scenarios,
 *   ASH@K = Σ_s |R_s ∩ S_s@K| / Σ_s |R_s|,
 * with R_s a scenario's relevant items and S_s@K the first K items returned for it (order inside
 * the set does not count). Here each query's judged-relevant items are its scenario. Unlike
 * Recall@K (the mean of per-query shares) a query with many relevant items weighs more.
 */
export function allScenarioHitrate(queries: readonly RankedQuery[], k: number): number | null {
  let hits = 0;
  let relevantTotal = 0;
  for (const query of queries) {
    const relevant = relevantItems(query);
    relevantTotal += relevant.size;
    hits += hitsAt(query, relevant, k);
  }
  return relevantTotal === 0 ? null : hits / relevantTotal;
}

/** Mean NDCG@10 over the queries that have one (what the hybrid's dense weight is chosen by); null when none has. */
export function meanNdcg10(queries: readonly RankedQuery[]): number | null {
  return meanOfKnown(queries.map((q) => ndcgAt(q, 10)));
}

export interface RetrievalFigures {
  /** Queries scored (those with at least one relevant item count for recall, MRR and ASH). */
  queries: number;
  recall: number | null;
  ndcg10: number | null;
  mrr: number | null;
  ash: number | null;
}

/** The mean of the known values; null when none is known. */
function meanOfKnown(values: readonly (number | null)[]): number | null {
  const known = values.filter((v): v is number => v !== null);
  return known.length === 0 ? null : mean(known);
}

/** Per-query figures, computed once so the bootstrap only averages. */
interface PerQuery {
  recall: number | null;
  ndcg10: number | null;
  rr: number | null;
  hits: number;
  relevant: number;
}

function perQuery(query: RankedQuery, k: number): PerQuery {
  const relevant = relevantItems(query);
  return { recall: recallAt(query, k), ndcg10: ndcgAt(query, 10), rr: reciprocalRank(query), hits: hitsAt(query, relevant, k), relevant: relevant.size };
}

function aggregate(rows: readonly PerQuery[]): RetrievalFigures {
  const relevant = rows.reduce((n, r) => n + r.relevant, 0);
  return {
    queries: rows.length,
    recall: meanOfKnown(rows.map((r) => r.recall)),
    ndcg10: meanOfKnown(rows.map((r) => r.ndcg10)),
    mrr: meanOfKnown(rows.map((r) => r.rr)),
    ash: relevant === 0 ? null : rows.reduce((n, r) => n + r.hits, 0) / relevant,
  };
}

/** Recall@k, NDCG@10, MRR and ASH@k over `queries` (means over queries; ASH pooled). */
export function retrievalFigures(queries: readonly RankedQuery[], k: number): RetrievalFigures {
  return aggregate(queries.map((q) => perQuery(q, k)));
}

export type FigureName = 'recall' | 'ndcg10' | 'mrr' | 'ash';
export const FIGURE_NAMES: readonly FigureName[] = ['recall', 'ndcg10', 'mrr', 'ash'];

export interface FiguresWithIntervals extends RetrievalFigures {
  /** 95 % (or `level`) percentile bootstrap interval of each figure; null where the figure is. */
  intervals: Record<FigureName, Interval | null>;
  resamples: number;
  level: number;
}

/**
 * The figures with percentile bootstrap intervals (Efron & Tibshirani 1993, ch. 13), resampling
 * queries with replacement: the query is the unit a retrieval figure is averaged over, so the
 * interval says how much it could move on another sample of as many queries. `random` is a seeded
 * uniform stream, so the interval is reproducible.
 */
export function retrievalFiguresWithIntervals(
  queries: readonly RankedQuery[],
  k: number,
  random: () => number,
  options: { resamples?: number; level?: number } = {},
): FiguresWithIntervals {
  const resamples = options.resamples ?? 1000;
  const level = options.level ?? 0.95;
  const rows = queries.map((q) => perQuery(q, k));
  const point = aggregate(rows);
  const draws: Record<FigureName, number[]> = { recall: [], ndcg10: [], mrr: [], ash: [] };
  const n = rows.length;
  if (n > 0) {
    for (let r = 0; r < resamples; r++) {
      const sample = Array.from({ length: n }, () => rows[Math.floor(random() * n)] as PerQuery);
      const figures = aggregate(sample);
      for (const name of FIGURE_NAMES) {
        const value = figures[name];
        if (value !== null) draws[name].push(value);
      }
    }
  }
  const interval = (name: FigureName): Interval | null => {
    if (point[name] === null || draws[name].length === 0) return null;
    const sorted = draws[name].sort((a, b) => a - b);
    return [quantile(sorted, (1 - level) / 2), quantile(sorted, (1 + level) / 2)];
  };
  return { ...point, intervals: Object.fromEntries(FIGURE_NAMES.map((name) => [name, interval(name)])) as Record<FigureName, Interval | null>, resamples, level };
}

/** Query-frequency slices: the query log's tiers, and `new` (absent from train). */
export const FREQUENCY_SLICES = ['head', 'torso', 'tail', 'new'] as const;
export type FrequencySlice = (typeof FREQUENCY_SLICES)[number];

/**
 * The slices a query belongs to: its tier in the query log (when the log has it) and `new` when the
 * query is not in the train split. A query split puts every dev and test query in `new`.
 */
export function frequencySlices(entry: { tier?: 'head' | 'torso' | 'tail'; new: boolean }): FrequencySlice[] {
  return [...(entry.tier ? [entry.tier] : []), ...(entry.new ? (['new'] as const) : [])];
}
