/**
 * The eval-retrieval stage's scoring: runs -> RankedQuery per method (human grades, plus judge labels
 * for the unjudged retrieved items among the first max(K, 10)), figures with intervals per method
 * and per slice.
 */
import { isRelevant, type Grade } from '../lib/relevance/types.ts';
import type { JudgedQuery } from '../lib/retrieval/catalog.ts';
import { FREQUENCY_SLICES, frequencySlices, retrievalFiguresWithIntervals, type FiguresWithIntervals, type RankedQuery } from '../lib/retrieval/metrics.ts';
import type { RetrievalRun } from '../retrieve/index.ts';

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

export function scoreRuns(input: {
  runs: readonly RetrievalRun[];
  judged: readonly JudgedQuery[];
  k: number;
  judge?: (query: string, itemKey: string) => Grade;
  slicesOf: (queryId: string) => { tier?: 'head' | 'torso' | 'tail'; new: boolean };
  random: (stream: string) => () => number;
  resamples: number;
  onMethod?: (done: number, total: number) => void;
}): { methods: Record<string, MethodFigures>; slices: Record<string, Record<string, MethodFigures>>; labels: JudgeLabel[] } {
  const { runs, judged, k } = input;
  const byQuery = new Map(judged.map((q) => [q.queryId, q]));
  const depth = Math.max(k, 10);
  // One label per (query, item), shared by every method that retrieved the pair.
  const labels = new Map<string, JudgeLabel>();
  const ranked = new Map<string, RankedQuery[]>();
  for (const run of runs) {
    const judgedQuery = byQuery.get(run.queryId);
    if (!judgedQuery) throw new Error(`runs: query "${run.query}" (${run.method}) is not a judged query of the split`);
    const grades = new Map(judgedQuery.grades);
    if (input.judge) {
      for (const key of run.retrieved.slice(0, depth)) {
        if (grades.has(key)) continue;
        const id = `${run.queryId}\u0000${key}`;
        let label = labels.get(id);
        if (!label) {
          label = { queryId: run.queryId, query: run.query, item: key, grade: input.judge(run.query, key) };
          labels.set(id, label);
        }
        grades.set(key, label.grade);
      }
    }
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
  return { methods, slices, labels: [...labels.values()] };
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
