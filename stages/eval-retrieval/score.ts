/**
 * The eval-retrieval stage's scoring: runs -> RankedQuery per method (human grades, plus judge labels
 * for the unjudged items any method retrieved among its first max(K, 10), pooled over methods),
 * figures with intervals per method and per slice.
 */
import { isRelevant, type Grade } from '../lib/relevance/types.ts';
import type { JudgedQuery } from '../lib/retrieval/catalog.ts';
import { FREQUENCY_SLICES, frequencySlices, retrievalFiguresWithIntervals, type FiguresWithIntervals, type RankedQuery } from '../lib/retrieval/metrics.ts';
import type { RetrievalRun } from '../lib/artifacts/retrieval.ts';

export interface JudgeLabel {
  queryId: string;
  query: string;
  item: string;
  grade: Grade;
}

export interface MethodFigures extends FiguresWithIntervals {
  /** Mean share of relevant items among each query's first K (human and judge labels). */
  relevantShare: number | null;
  /** Share of the first-K items whose grade came from a human. */
  humanJudgedShare: number | null;
}

/** How deep into each run unjudged items are labelled: the first K, and at least NDCG@10's ten. */
export function labelDepth(k: number): number {
  return Math.max(k, 10);
}

/** The (query, item) pairs among every run's first `labelDepth(k)` that no human judged for the query, once each. */
export function unjudgedPairs(runs: readonly RetrievalRun[], judged: readonly JudgedQuery[], k: number): { queryId: string; query: string; item: string }[] {
  const byQuery = new Map(judged.map((q) => [q.queryId, q]));
  const pairs = new Map<string, { queryId: string; query: string; item: string }>();
  for (const run of runs) {
    const grades = byQuery.get(run.queryId)?.grades;
    for (const item of run.retrieved.slice(0, labelDepth(k))) {
      const id = pairId(run.queryId, item);
      if (!grades?.has(item) && !pairs.has(id)) pairs.set(id, { queryId: run.queryId, query: run.query, item });
    }
  }
  return [...pairs.values()];
}

export const pairId = (queryId: string, item: string): string => `${queryId}\u0000${item}`;

export function scoreRuns(input: {
  runs: readonly RetrievalRun[];
  judged: readonly JudgedQuery[];
  k: number;
  /** A grade for an unjudged retrieved pair; undefined where the judge gave none (counted in `unlabelled`, not relevant). */
  judge?: (query: string, itemKey: string, queryId: string) => Grade | undefined;
  slicesOf: (queryId: string) => { tier?: 'head' | 'torso' | 'tail'; new: boolean };
  random: (stream: string) => () => number;
  resamples: number;
  onMethod?: (done: number, total: number) => void;
}): { methods: Record<string, MethodFigures>; slices: Record<string, Record<string, MethodFigures>>; labels: JudgeLabel[]; unlabelled: number } {
  const { runs, judged, k } = input;
  const byQuery = new Map(judged.map((q) => [q.queryId, q]));
  const depth = labelDepth(k);
  // One label per (query, item), and every method scored against the same pool: the human grades
  // plus every label any method's run brought (TREC-style pooling), so a relevant item only one
  // method found counts against the others' recall and ASH too.
  const labels = new Map<string, JudgeLabel>();
  const unlabelled = new Set<string>();
  for (const run of runs) {
    const judgedQuery = byQuery.get(run.queryId);
    if (!judgedQuery) throw new Error(`runs: query "${run.query}" (${run.method}) is not a judged query of the split`);
    if (!input.judge) continue;
    for (const key of run.retrieved.slice(0, depth)) {
      const id = pairId(run.queryId, key);
      if (judgedQuery.grades.has(key) || labels.has(id) || unlabelled.has(id)) continue;
      const grade = input.judge(run.query, key, run.queryId);
      if (grade === undefined) unlabelled.add(id);
      else labels.set(id, { queryId: run.queryId, query: run.query, item: key, grade });
    }
  }
  const pooled = new Map([...byQuery].map(([queryId, q]) => [queryId, new Map(q.grades)]));
  for (const label of labels.values()) pooled.get(label.queryId)?.set(label.item, label.grade);
  const ranked = new Map<string, RankedQuery[]>();
  for (const run of runs) {
    const grades = pooled.get(run.queryId) as Map<string, Grade>;
    const list = ranked.get(run.method) ?? [];
    list.push({ queryId: run.queryId, query: run.query, retrieved: run.retrieved, grades });
    ranked.set(run.method, list);
  }
  const methods: Record<string, MethodFigures> = {};
  const slices: Record<string, Record<string, MethodFigures>> = {};
  let done = 0;
  for (const [method, queries] of ranked) {
    methods[method] = figures(queries, k, input.random(method), input.resamples, byQuery);
    for (const slice of FREQUENCY_SLICES) {
      const members = queries.filter((q) => frequencySlices(input.slicesOf(q.queryId)).includes(slice));
      if (members.length === 0) continue;
      (slices[slice] ??= {})[method] = figures(members, k, input.random(`${method}/${slice}`), input.resamples, byQuery);
    }
    input.onMethod?.(++done, ranked.size);
  }
  return { methods, slices, labels: [...labels.values()], unlabelled: unlabelled.size };
}

function figures(queries: readonly RankedQuery[], k: number, random: () => number, resamples: number, human: ReadonlyMap<string, JudgedQuery>): MethodFigures {
  const withIntervals = retrievalFiguresWithIntervals(queries, k, random, { resamples });
  let relevantShares = 0;
  let humanShares = 0;
  let counted = 0;
  for (const q of queries) {
    const top = q.retrieved.slice(0, k);
    if (top.length === 0) continue;
    counted++;
    relevantShares += top.filter((key) => {
      const grade = q.grades.get(key);
      return grade !== undefined && isRelevant(grade);
    }).length / top.length;
    humanShares += top.filter((key) => human.get(q.queryId)?.grades.has(key)).length / top.length;
  }
  return { ...withIntervals, relevantShare: counted ? relevantShares / counted : null, humanJudgedShare: counted ? humanShares / counted : null };
}
