/** The eval's report fragment: the comparison table, per-grade scores, confusions, slices and samples. */
import type { Cell, FragmentBlock, ReportFragment } from '../../pipeline/api.ts';
import { DEGENERATE_GRADE_SHARE, DEGENERATE_QWK } from '../lib/relevance/grade-agreement.ts';
import { GRADES } from '../lib/relevance/types.ts';
import type { EvalMetrics } from './eval-metrics.ts';
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
    ...(metrics.delivered ? [['delivered', metrics.delivered.summary] as [string, ModelSummary]] : []),
    // On dev, beside the cross-fitted row (whose candidate was chosen on those same figures): the
    // selection's nested estimate. On test it is a dev figure, so it stays in the note.
    ...(metrics.split === 'dev' && metrics.delivered?.nested ? [['delivered (nested)', metrics.delivered.nested.summary] as [string, ModelSummary]] : []),
    ...(metrics.baseline ? [['baseline', metrics.baseline] as [string, ModelSummary]] : []),
    ...(metrics.learnedBaseline ? [['learned-baseline', metrics.learnedBaseline] as [string, ModelSummary]] : []),
  ];
}

/** What "(degenerate)" beside a model means, when a row carries it. */
function degenerateNote(metrics: EvalMetrics): string[] {
  return metrics.comparison.some((r) => r.degenerate) ? [`(degenerate): one grade for at least ${DEGENERATE_GRADE_SHARE * 100} % of pairs while gold is not, or QWK at most ${DEGENERATE_QWK}`] : [];
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
      r.degenerate ? `${r.model} (degenerate)` : r.model,
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
    note: [`95% CI: percentile bootstrap over the examples, ${metrics.comparison[0]?.intervals.resamples ?? 0} resamples`, ...degenerateNote(metrics), ...thresholds, ...ensemble, ...pooled].join('; '),
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

/** The delivered judge and both baselines, the rows the verdict compares. */
function verdictRows(metrics: EvalMetrics): [string, ModelSummary][] {
  return [
    ...(metrics.delivered ? [['delivered', metrics.delivered.summary] as [string, ModelSummary]] : []),
    // On dev, beside the cross-fitted row (whose candidate was chosen on those same figures): the
    // selection's nested estimate. On test it is a dev figure, so it stays in the note.
    ...(metrics.split === 'dev' && metrics.delivered?.nested ? [['delivered (nested)', metrics.delivered.nested.summary] as [string, ModelSummary]] : []),
    ...(metrics.baseline ? [['baseline', metrics.baseline] as [string, ModelSummary]] : []),
    ...(metrics.learnedBaseline ? [['learned-baseline', metrics.learnedBaseline] as [string, ModelSummary]] : []),
  ];
}

/** Share of the examples predicted as each grade ('none': unanswered), from a summary's confusion counts. */
function predictedShares(s: ModelSummary): Record<string, number> {
  const total = s.count || 1;
  return Object.fromEntries([...GRADES, 'none' as const].map((p) => [p, GRADES.reduce((sum, gold) => sum + s.confusion[gold][p], 0) / total]));
}

function verdictBlocks(metrics: EvalMetrics): FragmentBlock[] {
  const delivered = metrics.delivered;
  if (!delivered) return [];
  const rows = verdictRows(metrics);
  const cross = delivered.crossFitted;
  const definition = delivered.definition;
  const warning: FragmentBlock[] = metrics.degeneracy?.degenerate
    ? [{ type: 'texts', title: 'Warning: the delivered judge is degenerate', items: [{ heading: `on ${metrics.split}`, text: metrics.degeneracy.reasons.join('\n') }] }]
    : [];
  const figures: FragmentBlock = {
    type: 'table',
    title: `Verdict: the delivered judge against both baselines on ${metrics.examples} ${metrics.split} examples`,
    columns: ['model', 'Acc@2', '95% CI', 'macro-F1', '95% CI', 'QWK', '95% CI'],
    rows: rows.map(([name, s]) => [name, round(s.acc2), interval(s.intervals.acc2), round(s.macroF1), interval(s.intervals.macroF1), round(s.qwk), interval(s.intervals.qwk)]),
    note: [
      `delivered: ${delivered.name} (members ${definition.members.length > 0 ? definition.members.join(', ') : 'none'}, lexical pool weight ${definition.lexicalWeight}, rule ${definition.rule}${definition.cutPoints ? ` at ${definition.cutPoints.map((t) => t.toFixed(3)).join(' / ')}` : ''})`,
      `chosen among ${delivered.candidates} candidates on ${delivered.fittedOn.examples} dev examples: ${delivered.folds.scheme}`,
      `cross-fitted dev macro-F1 ${cross.macroF1.toFixed(4)}, QWK ${cross.qwk === null ? 'n/a' : cross.qwk.toFixed(4)}`,
      ...(delivered.nested
        ? [`the selection by nested cross-validation on dev (outer folds of ${delivered.nested.folds.examples.join('/')} pairs): macro-F1 ${delivered.nested.summary.macroF1.toFixed(4)} ${interval(delivered.nested.summary.intervals.macroF1)}, QWK ${round(delivered.nested.summary.qwk)} ${interval(delivered.nested.summary.intervals.qwk)}`]
        : []),
      metrics.split === 'dev' ? 'the delivered row is its cross-fitted dev predictions' : 'the delivered row applies the judge as fitted on all of dev to test',
    ].join('; '),
  };
  const values = rows.flatMap(([model, s]) =>
    (
      [
        ['Acc@2', s.acc2, s.intervals.acc2],
        ['macro-F1', s.macroF1, s.intervals.macroF1],
        ['QWK', s.qwk, s.intervals.qwk],
      ] as const
    ).flatMap(([metric, value, ci]) => (value === null ? [] : [{ model, metric, value, low: ci?.[0] ?? value, high: ci?.[1] ?? value }])),
  );
  const chart: FragmentBlock = {
    type: 'chart',
    title: 'Delivered judge and baselines: Acc@2, macro-F1 and QWK with 95 % intervals',
    spec: {
      data: { values },
      width: 360,
      height: 200,
      encoding: {
        x: { field: 'metric', type: 'nominal', title: null, sort: ['Acc@2', 'macro-F1', 'QWK'], axis: { labelAngle: 0 } },
        xOffset: { field: 'model', type: 'nominal', sort: rows.map(([m]) => m) },
        color: { field: 'model', type: 'nominal', sort: rows.map(([m]) => m) },
      },
      layer: [
        { mark: 'bar', encoding: { y: { field: 'value', type: 'quantitative', title: null, scale: { domain: [Math.min(0, ...values.map((v) => v.low)), 1] } } } },
        { mark: { type: 'rule', color: 'black' }, encoding: { y: { field: 'low', type: 'quantitative' }, y2: { field: 'high' } } },
      ],
    },
  };
  const shareRows = [
    { model: 'gold', shares: Object.fromEntries(GRADES.map((g) => [g, (rows[0]?.[1].perGrade[g].support ?? 0) / (rows[0]?.[1].count || 1)])) },
    ...summaries(metrics).map(([model, s]) => ({ model, shares: predictedShares(s) })),
  ];
  const sharesChart: FragmentBlock = {
    type: 'chart',
    title: "Predicted-grade shares beside gold's (a bar of one colour is a judge that answers one grade)",
    spec: {
      data: { values: shareRows.flatMap(({ model, shares }) => Object.entries(shares).filter(([, v]) => v > 0).map(([grade, share]) => ({ model, grade, share }))) },
      width: 360,
      mark: 'bar',
      encoding: {
        y: { field: 'model', type: 'nominal', title: null, sort: shareRows.map((r) => r.model) },
        x: { field: 'share', type: 'quantitative', title: 'share of examples', scale: { domain: [0, 1] } },
        // Red (L1) to green (L4), grey for unanswered.
        color: { field: 'grade', type: 'nominal', sort: [...GRADES, 'none'], scale: { domain: [...GRADES, 'none'], range: ['#d7191c', '#fdae61', '#a6d96a', '#1a9641', '#bdbdbd'] } },
        order: { field: 'grade' },
      },
    },
  };
  const heatmaps: FragmentBlock = {
    type: 'chart',
    title: 'Confusion matrices (rows: gold, columns: predicted; share of each gold grade)',
    spec: {
      columns: 4,
      // Concatenated rather than faceted: a facet draws empty axes in the grid's unused cells.
      concat: summaries(metrics).map(([model, s]) => {
        const predictedGrades = s.unanswered > 0 ? [...GRADES, 'none' as const] : [...GRADES];
        return {
        title: model,
        width: 110,
        height: 110,
        data: {
          values: GRADES.flatMap((gold) =>
            predictedGrades.map((predicted) => ({ gold, predicted, count: s.confusion[gold][predicted], share: s.perGrade[gold].support === 0 ? 0 : s.confusion[gold][predicted] / s.perGrade[gold].support })),
          ),
        },
        encoding: {
          x: { field: 'predicted', type: 'ordinal', sort: predictedGrades, title: null, axis: { labelAngle: 0 } },
          y: { field: 'gold', type: 'ordinal', sort: [...GRADES].reverse(), title: null },
        },
        layer: [
          { mark: 'rect', encoding: { color: { field: 'share', type: 'quantitative', scale: { domain: [0, 1], scheme: 'blues' }, legend: null } } },
          { mark: { type: 'text', fontSize: 9 }, encoding: { text: { field: 'count', type: 'quantitative' }, color: { condition: { test: 'datum.share > 0.5', value: 'white' }, value: 'black' } } },
        ],
        };
      }),
    },
  };
  return [...warning, figures, chart, sharesChart, heatmaps];
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
    blocks: [
      // The verdict first: the delivered judge against both baselines, where it collapses, how it errs.
      ...verdictBlocks(metrics),
      comparisonTable(metrics),
      perGradeTable(metrics),
      confusionTable(metrics),
      slicesTable(metrics),
      capabilityChart(metrics),
      samples(predictions, sampleCount),
    ],
  };
}
