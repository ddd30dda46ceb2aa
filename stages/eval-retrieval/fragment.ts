/** eval-retrieval's report fragment: methods side by side with intervals, then the slices. */
import type { Cell, FragmentBlock, ReportFragment } from '../../pipeline/api.ts';
import type { MethodFigures } from './score.ts';

const round = (value: number | null): number | null => (value === null ? null : Math.round(value * 10_000) / 10_000);
const interval = (value: [number, number] | null): string | null => (value === null ? null : `[${value[0].toFixed(3)}, ${value[1].toFixed(3)}]`);

function rows(methods: Record<string, MethodFigures>, lead: (method: string) => Cell[]): Cell[][] {
  return Object.entries(methods).map(([method, f]) => [
    ...lead(method),
    f.queries,
    round(f.recall),
    interval(f.intervals.recall),
    round(f.ndcg10),
    interval(f.intervals.ndcg10),
    round(f.mrr),
    interval(f.intervals.mrr),
    round(f.ash),
    interval(f.intervals.ash),
    round(f.relevantShare),
    round(f.humanJudgedShare),
  ]);
}

function hybridWeights(hybrid: Record<string, { denseWeight: number; tuneSplit: string }> | undefined): string {
  const chosen = Object.entries(hybrid ?? {}).map(([stage, h]) => `${stage} ${h.denseWeight} on ${h.tuneSplit}`);
  return chosen.length > 0 ? `: ${chosen.join(', ')}` : '';
}

export function retrievalFragment(metrics: {
  split: string;
  k: number;
  queries: number;
  judge: string;
  judgeLabels: number;
  judgeUnlabelled?: number;
  judgeName?: string;
  annRecall: Record<string, number>;
  hybrid?: Record<string, { denseWeight: number; tuneSplit: string }>;
  hasQueryLog: boolean;
  methods: Record<string, MethodFigures>;
  slices: Record<string, Record<string, MethodFigures>>;
}): ReportFragment {
  const k = metrics.k;
  const figureColumns = ['queries', `Recall@${k}`, '95% CI', 'NDCG@10', '95% CI', 'MRR', '95% CI', `ASH@${k}`, '95% CI', `relevant in top ${k}`, `human-judged in top ${k}`];
  const ann = Object.entries(metrics.annRecall).map(([stage, r]) => `${stage}: HNSW recall against exact search ${r.toFixed(4)}`);
  const judge =
    metrics.judge === 'none'
      ? 'Unjudged retrieved items count as not relevant.'
      : `${metrics.judgeLabels} labels of unjudged retrieved items came from the ${metrics.judgeName ?? metrics.judge} judge (trained or fitted on train); the rest are human judgements.${metrics.judgeUnlabelled ? ` ${metrics.judgeUnlabelled} unjudged retrieved pairs got no grade from it and count as not relevant.` : ''}`;
  const blocks: FragmentBlock[] = [
    {
      type: 'table',
      title: `Retrieval on ${metrics.queries} ${metrics.split} queries`,
      columns: ['method', ...figureColumns],
      rows: rows(metrics.methods, (method) => [method]),
      note: [judge, `rrf: reciprocal-rank fusion of bm25 and the dense run, equal weights (k = 60). hybrid: the same with the dense run's weight chosen by NDCG@10 on another split's queries (0 = bm25 alone)${hybridWeights(metrics.hybrid)}.`, ...ann].join(' '),
    },
  ];
  const sliceRows = Object.entries(metrics.slices).flatMap(([slice, methods]) => rows(methods, (method) => [slice, method]));
  if (sliceRows.length > 0) {
    blocks.push({
      type: 'table',
      title: 'By query frequency',
      columns: ['slice', 'method', ...figureColumns],
      rows: sliceRows,
      note: metrics.hasQueryLog ? 'Tiers from the dataset’s query log; new: not a train query.' : 'The dataset has no query log: only the new slice (not a train query).',
    });
  }
  return { title: `Retrieval (${metrics.split})`, blocks };
}
