/** The eval's report fragment: the comparison table, per-grade scores, confusions, slices and samples. */
import type { Cell, FragmentBlock, ReportFragment } from '../../pipeline/report/fragment.ts';
import { GRADES } from '../lib/relevance/types.ts';
import type { EvalMetrics } from './index.ts';
import type { Prediction } from './predictions.ts';
import type { ModelSummary } from './summary.ts';

const round = (value: number | null): number | null => (value === null ? null : Math.round(value * 10_000) / 10_000);
/** "[0.812, 0.903]": a 95 % bootstrap interval in a table cell. */
const interval = (value: [number, number] | null): string | null => (value === null ? null : `[${value[0].toFixed(3)}, ${value[1].toFixed(3)}]`);

function summaries(metrics: EvalMetrics): [string, ModelSummary][] {
  return [
    ...Object.entries(metrics.checkpoints),
    ...(metrics.ensemble ? [['ensemble', metrics.ensemble] as [string, ModelSummary]] : []),
    ...Object.entries(metrics.pooled ?? {}),
    ...(metrics.baseline ? [['baseline', metrics.baseline] as [string, ModelSummary]] : []),
    ...(metrics.learnedBaseline ? [['learned-baseline', metrics.learnedBaseline] as [string, ModelSummary]] : []),
  ];
}

function comparisonTable(metrics: EvalMetrics): FragmentBlock {
  const thresholds = Object.entries(metrics.checkpoints)
    .filter(([, s]) => s.threshold)
    .map(([name, s]) => `${name}: answer_first, cumulative threshold ${s.threshold?.threshold.toFixed(4)}`);
  const pooledWeight = Object.values(metrics.pooled ?? {})[0]?.weight;
  const pooled = pooledWeight === undefined ? [] : [`+lexical: the checkpoint's grade probabilities pooled with the learned lexical baseline's (weighted geometric mean, weight ${pooledWeight} on the baseline), median grade`];
  const ensemble = metrics.ensemble ? [`ensemble: the median of the geometric mean of ${metrics.ensemble.members.join(', ')}'s grade probabilities`] : [];
  return {
    type: 'table',
    title: `Comparison on ${metrics.examples} ${metrics.split} examples`,
    columns: ['model', 'Acc@2', '95% CI', 'Acc@4', '95% CI', 'macro-F1', '95% CI', 'QWK', '95% CI', 'format valid', 'steps verified', 'rule adherence', 'mean tokens', 'ms / example'],
    rows: metrics.comparison.map((r) => [
      r.model,
      round(r.acc2),
      interval(r.intervals.acc2),
      round(r.acc4),
      interval(r.intervals.acc4),
      round(r.macroF1),
      interval(r.intervals.macroF1),
      round(r.qwk),
      interval(r.intervals.qwk),
      round(r.formatValidity),
      round(r.stepVerificationRate),
      round(r.ruleAdherence),
      round(r.meanCompletionTokens),
      round(r.meanLatencyMs),
    ]),
    note: [`95% CI: percentile bootstrap over the examples, ${metrics.comparison[0]?.intervals.resamples ?? 0} resamples`, ...thresholds, ...ensemble, ...pooled].join('; '),
  };
}

function perGradeTable(metrics: EvalMetrics): FragmentBlock {
  const rows: Cell[][] = summaries(metrics).flatMap(([name, s]) =>
    GRADES.map((g) => [name, g, round(s.perGrade[g].precision), round(s.perGrade[g].recall), round(s.perGrade[g].f1), s.perGrade[g].support]),
  );
  return { type: 'table', title: 'Per-grade precision, recall and F1', columns: ['model', 'grade', 'precision', 'recall', 'F1', 'support'], rows };
}

function confusionTable(metrics: EvalMetrics): FragmentBlock {
  const rows: Cell[][] = summaries(metrics).flatMap(([name, s]) => GRADES.map((gold) => [name, gold, ...GRADES.map((p) => s.confusion[gold][p]), s.confusion[gold].none]));
  return { type: 'table', title: 'Confusion (rows: gold, columns: predicted)', columns: ['model', 'gold', ...GRADES, 'none'], rows };
}

function slicesTable(metrics: EvalMetrics): FragmentBlock {
  const rows: Cell[][] = summaries(metrics).flatMap(([name, s]) =>
    (['capability', 'difficulty', 'source'] as const).flatMap((kind) =>
      Object.entries(s.slices[kind]).map(([value, x]) => [name, kind, value, x.count, round(x.acc2), round(x.acc4), round(x.macroF1)]),
    ),
  );
  return { type: 'table', title: 'Slices', columns: ['model', 'slice', 'value', 'count', 'Acc@2', 'Acc@4', 'macro-F1'], rows };
}

function capabilityChart(metrics: EvalMetrics): FragmentBlock {
  const values = summaries(metrics).flatMap(([model, s]) => Object.entries(s.slices.capability).map(([capability, x]) => ({ model, capability, acc4: x.acc4 })));
  return {
    type: 'chart',
    title: 'Acc@4 by capability',
    spec: {
      data: { values },
      mark: 'bar',
      encoding: {
        x: { field: 'capability', type: 'nominal' },
        xOffset: { field: 'model', type: 'nominal' },
        y: { field: 'acc4', type: 'quantitative', scale: { domain: [0, 1] }, title: 'Acc@4' },
        color: { field: 'model', type: 'nominal' },
      },
    },
  };
}

/** The first `count` predictions of each model that wrote a completion, with its reasoning. */
function samples(predictions: readonly Prediction[], count: number): FragmentBlock {
  const byModel = new Map<string, Prediction[]>();
  for (const p of predictions) if (p.completion !== null) byModel.set(p.model, [...(byModel.get(p.model) ?? []), p]);
  const items = [...byModel.values()].flatMap((list) =>
    list.slice(0, count).map((p) => ({
      heading: `${p.model} · ${p.id} · gold ${p.gold}, predicted ${p.predicted ?? 'none'} · ${p.stepsVerified}/5 steps verified${p.formatOk ? '' : ` · format: ${p.formatErrors.join(', ')}`}`,
      text: p.completion ?? '',
    })),
  );
  return { type: 'texts', title: 'Sample predictions with their reasoning', items };
}

export function evalFragment(metrics: EvalMetrics, predictions: readonly Prediction[], sampleCount: number): ReportFragment {
  return {
    title: 'Evaluation',
    blocks: [comparisonTable(metrics), perGradeTable(metrics), confusionTable(metrics), slicesTable(metrics), capabilityChart(metrics), samples(predictions, sampleCount)],
  };
}
