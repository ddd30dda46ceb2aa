/**
 * eval: every checkpoint in `needs`, every distilled model (DeepBoW, from `distill`) and the
 * lexical baseline, judged on the test split of the
 * prompts (or on dev, `split: dev`, for choosing between runs without touching test). Checkpoints
 * decode greedily; the grade is the parsed answer (or, with `grade: median`, the median of the
 * answer tokens' probabilities after the reasoning the checkpoint wrote), or for an answer_first
 * checkpoint (TaoSR1's post-CoT) the cumulative-probability partition of the answer tokens'
 * probabilities with one threshold tuned on dev. With `lexical_pool: w`, each checkpoint gets a
 * second row, `<checkpoint>+lexical`: its grade probabilities pooled with the learned lexical
 * baseline's (logarithmic pool, weight w on the lexical model), read at their median. With
 * `ensemble: [a, b, ...]`, a row `ensemble` judges by the median of those checkpoints' equal-weight
 * geometric mean (and, with lexical_pool, `ensemble+lexical`). Each
 * completion is parsed and its steps verified against the relevance analysis of the gold pair over
 * the knowledge graph. What is tuned (the
 * answer_first threshold, the baseline's cut points) is tuned on dev, or on train when dev is the
 * split evaluated, so no figure is tuned on the examples it reports.
 *
 * Writes metrics.json ({checkpoints, baseline, comparison, ...}), predictions.jsonl (one line per
 * model and example) and report.json (a fragment `pipeline report` embeds).
 *
 *   eval:
 *     uses: eval
 *     needs: [sft, dpo, grpo, icl, kg]
 *     with: { limit: 200 }
 */
import { join } from 'node:path';
import { z } from 'zod';
import { defineStage, REPORT_FRAGMENT_FILE, type EngineRecord, type QualityCheck, type StageContext } from '../../pipeline/api.ts';
import { DEGENERATE_QWK, describeShares, judgeDegeneracy } from '../lib/relevance/grade-agreement.ts';
import { chooseDelivered, judgePredictions, nestedSelection } from './delivery.ts';
import type { ReasoningSteps } from '../lib/relevance/completion.ts';
import { GRADE_READINGS, THRESHOLD_TUNING_EXAMPLES } from '../lib/relevance/grade-pooling.ts';
import type { PromptRecord } from '../lib/relevance/prompts.ts';
import type { KnowledgeGraph } from '../lib/relevance/kg.ts';
import type { Grade, Split } from '../lib/relevance/types.ts';
import type { LearnedBaseline } from '../lib/relevance/learned-baseline.ts';
import { ensemblePrediction, exampleFields, pooledPrediction, scoreCompletion, unreadablePrediction, type Prediction } from './predictions.ts';
import { comparisonRow, summarise, type ModelSummary } from './summary.ts';
import type { JudgeInputs } from './delivery.ts';
import type { CheckpointResult, EvalMetrics } from './eval-metrics.ts';
import type { Degeneracy } from '../lib/relevance/grade-agreement.ts';

const params = z.strictObject({
  split: z.enum(['test', 'dev']).default('test').describe('Split evaluated: test for the figures you report, dev to compare runs without looking at test'),
  limit: z.number().int().min(0).default(0).describe('Examples evaluated, a seeded random sample of the split (0 = the whole split)'),
  // Optional, so configs without it keep their fingerprints (and their uniform samples).
  stratify: z
    .boolean()
    .optional()
    .describe("With limit: the sample is stratified by gold grade (each grade's share of the split kept to within one pair), so a capped dev split still holds its rare grades for the delivered judge's fit"),
  dev_limit: z.number().int().min(1).default(THRESHOLD_TUNING_EXAMPLES).describe('Examples used to tune the answer_first grade threshold, a seeded random sample (from dev; from train when split is dev)'),
  batch_size: z.number().int().positive().default(8).describe('Prompts decoded at once'),
  max_new_tokens: z.number().int().positive().default(160).describe('Generation budget per completion'),
  baseline: z.boolean().default(true).describe('Also evaluate the lexical baseline (fitted on train, thresholds tuned on dev)'),
  learned_baseline: z.boolean().default(true).describe('Also evaluate the learned lexical baseline (logistic regression over BM25, coverage and phrase features, fitted on train)'),
  // Optional, so configs without it keep their fingerprints (and read the written answer).
  grade: z
    .enum(GRADE_READINGS)
    .optional()
    .describe(
      "How a think-first checkpoint's grade is read: 'answer' (the default) parses the grade it wrote; 'median' reads the grade probabilities at its answer, after the reasoning it wrote, and takes their median",
    ),
  // Optional, so configs without it keep their fingerprints.
  lexical_pool: z
    .number()
    .min(0)
    .max(1)
    .optional()
    .describe(
      "Also score each checkpoint pooled with the learned lexical baseline: its grade probabilities and the baseline's combined as a weighted geometric mean (this weight on the baseline), read at their median, in a row '<checkpoint>+lexical'. What `pipeline score --lexical-pool` and precompute's lexical_pool serve",
    ),
  // Optional, so configs without it keep their fingerprints.
  ensemble: z
    .array(z.string())
    .min(2)
    .optional()
    .describe(
      "Checkpoints in needs (e.g. the final model and SFT runs under other `seed_offset`s) judged as one: a row 'ensemble' reads the median of the equal-weight geometric mean of their grade probabilities, each read after the reasoning that member wrote; with lexical_pool also 'ensemble+lexical'",
    ),
  report_samples: z.number().int().min(0).default(6).describe('Predictions per model shown with their reasoning in the report'),
});
type Params = z.output<typeof params>;

/** "Acc@2 0.9000 [0.8500, 0.9438], ..." : each figure with its 95 % bootstrap interval. */
function headline(s: ModelSummary): string {
  const figure = (name: string, value: number | null, interval: [number, number] | null) =>
    `${name} ${value === null ? 'n/a' : value.toFixed(4)}${interval ? ` [${interval[0].toFixed(4)}, ${interval[1].toFixed(4)}]` : ''}`;
  return [
    figure('Acc@2', s.acc2, s.intervals.acc2),
    figure('Acc@4', s.acc4, s.intervals.acc4),
    figure('macro-F1', s.macroF1, s.intervals.macroF1),
    figure('QWK', s.qwk, s.intervals.qwk),
  ].join(', ');
}

async function evaluateCheckpoint(
  ctx: StageContext<Params>,
  name: string,
  dir: string,
  evaluated: readonly PromptRecord[],
  tuningSet: readonly PromptRecord[],
  references: ReadonlyMap<string, ReasoningSteps>,
  onBatch: (examples: number) => void,
): Promise<{ result: CheckpointResult; engine: EngineRecord }> {
  const policyLib = await import('../lib/judge/model.ts');
  const { seededSample } = await import('../lib/relevance/subsample.ts');
  const { answerPrefix, gradeProbsAfter, tuneAnswerFirstThreshold } = await import('../lib/judge/grade-probs.ts');
  const { cumulativeGrade, MEDIAN_THRESHOLD } = await import('../lib/relevance/grade-pooling.ts');
  const p = ctx.params;
  const { policy, engine } = await policyLib.loadPolicy(dir, ctx.engine, ctx.log);
  try {
    const promptIdsOf = (record: PromptRecord) => policyLib.promptIds(policy.tokenizer, policy.format, record.messages);
    const fits = (record: PromptRecord) => policyLib.fitsContext(policy, promptIdsOf(record).length, p.max_new_tokens);
    const readable = evaluated.filter(fits);
    const promptTooLong = evaluated.length - readable.length;
    if (promptTooLong > 0) ctx.log.warn(`${name}: ${promptTooLong} ${p.split} prompts do not fit the context with max_new_tokens ${p.max_new_tokens}; counted as unanswered`);

    let threshold: CheckpointResult['threshold'];
    const probsOf = (prefixes: readonly (number[] | undefined)[]) => gradeProbsAfter(policy, prefixes, { batchSize: p.batch_size, signal: ctx.signal });
    if (policy.format.answerFirst) {
      const tuningSplit = tuningSplitOf(p.split);
      const tuning = seededSample(tuningSet.filter(fits), p.dev_limit, ctx.rng.fork(`${name}/threshold-tuning`));
      const tuned = await tuneAnswerFirstThreshold(policy, tuning.map((r) => ({ gold: r.example.label, promptIds: promptIdsOf(r) })), { batchSize: p.batch_size, signal: ctx.signal });
      threshold = { threshold: tuned.threshold, tuningMacroF1: tuned.macroF1, tuningExamples: tuning.length, tuningSplit };
      ctx.log.info(`${name}: answer_first, cumulative threshold ${threshold.threshold.toFixed(4)} (macro-F1 ${threshold.tuningMacroF1.toFixed(4)} on ${tuning.length} ${tuningSplit} examples)`);
    }

    const predictions = new Map<string, Prediction>();
    for (let i = 0; i < readable.length; i += p.batch_size) {
      const batch = readable.slice(i, i + p.batch_size);
      const started = performance.now();
      const completions = await policyLib.greedyCompletions(policy, batch, {
        batchSize: batch.length,
        maxNewTokens: p.max_new_tokens,
        rng: ctx.rng.fork(`${name}/generate`),
        signal: ctx.signal,
      });
      // The cumulative partition: after the prompt with the threshold tuned for answer_first; with
      // grade: median after the reasoning the checkpoint wrote (GradeReading), undefined where
      // `<answer>G` would not fit the context after it.
      const cut = threshold?.threshold ?? (p.grade === 'median' ? MEDIAN_THRESHOLD : undefined);
      const prefixOf = (r: PromptRecord, j: number) => (threshold ? promptIdsOf(r) : answerPrefix(policy, promptIdsOf(r), (completions[j] as (typeof completions)[number]).text));
      // Always read: the delivered judge is chosen among every checkpoint's readings.
      const probs = await probsOf(batch.map(prefixOf));
      const latencyMs = (performance.now() - started) / batch.length;
      completions.forEach((completion, j) => {
        const record = batch[j] as PromptRecord;
        const read = probs?.[j];
        const grade = read ? { probs: read, ...(cut !== undefined ? { predicted: cumulativeGrade(read, cut) } : {}) } : undefined;
        const reference = references.get(record.id) as ReasoningSteps;
        predictions.set(record.id, scoreCompletion(name, record.example, reference, { text: completion.text, tokens: completion.tokens.length, latencyMs }, grade));
      });
      onBatch(batch.length);
    }
    // The split's order, with the unreadable prompts in their places.
    const ordered = evaluated.map((r) => predictions.get(r.id) ?? unreadablePrediction(name, r.example));
    return { result: { predictions: ordered, threshold, promptTooLong }, engine };
  } finally {
    await policyLib.releasePolicy(policy);
  }
}

/** A baseline's predictions: no completion, only a grade per example. */
function baselinePredictions(model: string, examples: readonly PromptRecord[], predict: (example: PromptRecord['example']) => Grade): Prediction[] {
  return examples.map((r): Prediction => {
    const started = performance.now();
    const predicted = predict(r.example);
    const latencyMs = performance.now() - started;
    return { model, ...exampleFields(r.example), predicted, formatOk: null, formatErrors: [], stepsVerified: null, rulesNamed: null, completion: null, completionTokens: null, latencyMs };
  });
}

/** A checkpoint's predictions pooled with the learned lexical model's probabilities, in the same order. */
function pooledRows(model: string, judged: readonly Prediction[], examples: readonly PromptRecord[], lexical: LearnedBaseline, weight: number): Prediction[] {
  return judged.map((prediction, i) => {
    const started = performance.now();
    const probabilities = lexical.probabilities((examples[i] as PromptRecord).example);
    return pooledPrediction(model, prediction, probabilities, weight, performance.now() - started);
  });
}

/** The ensemble's predictions, example by example, from its members' rows among the checkpoints' (in the split's order). */
function ensembleRows(members: readonly string[], predictions: readonly Prediction[], checkpoints: readonly string[]): Prediction[] {
  const rows = members.map((member) => {
    const own = predictions.filter((r) => r.model === member);
    if (own.length === 0) throw new Error(`eval: ensemble member ${member} is not a checkpoint in needs (checkpoints: ${checkpoints.join(', ')})`);
    return own;
  });
  return (rows[0] as Prediction[]).map((_, i) => ensemblePrediction('ensemble', rows.map((own) => own[i] as Prediction)));
}

/** A DeepBoW model's predictions: its most probable grade, with its probabilities; no completion. */
async function distilledPredictions(name: string, dir: string, examples: readonly PromptRecord[], kg: KnowledgeGraph): Promise<Prediction[]> {
  const { readFileSync } = await import('node:fs');
  const { judgeItems, deepBowProblem, DISTILLED_MODEL_FILE } = await import('../lib/serving/deepbow.ts');
  const file = join(dir, DISTILLED_MODEL_FILE);
  const model = JSON.parse(readFileSync(file, 'utf8')) as import('../lib/serving/deepbow.ts').DeepBowModel;
  const problem = deepBowProblem(model);
  if (problem) throw new Error(`${file}: ${problem}`);
  return examples.map((r): Prediction => {
    const started = performance.now();
    const [judged] = judgeItems(model, r.example.query, [r.example.item], kg) as [import('../lib/serving/deepbow.ts').DeepBowJudgement];
    const latencyMs = performance.now() - started;
    return { model: name, ...exampleFields(r.example), predicted: judged.grade, gradeProbs: judged.probabilities, formatOk: null, formatErrors: [], stepsVerified: null, rulesNamed: null, completion: null, completionTokens: null, latencyMs };
  });
}

export default defineStage({
  name: 'eval',
  // 3: the learned baseline in the report's per-grade, confusion and slice tables (lexical_pool rows).
  // 4: the delivered judge (chosen on dev by cross-fitting), its degeneracy check, the verdict blocks.
  // 5: balanced query folds, fewer structured candidates and the one-SE rule; the nested estimate.
  // 6: every model's row says whether it is degenerate (metrics.json, the log and the report).
  version: '6',
  description: 'Evaluate checkpoints and the lexical baseline on the test (or dev) split: metrics, slices, step verification, comparison table',
  params,
  produces: 'eval',
  resources: 'train',
  requires: (p) => ['prompts', 'kg', ...(p.baseline ? [] : (['checkpoint'] as const))],
  async check(p, { needs }) {
    return (p.ensemble ?? []).flatMap((member, i) =>
      needs.includes(member) ? [] : [{ path: ['ensemble', i], message: `ensemble member ${member} is not in needs (${needs.join(', ')}); add it there` }],
    );
  },
  async run(ctx) {
    const p = ctx.params;
    const { writeJsonl } = await import('../lib/io/jsonl.ts');
    const { readPromptRecords } = await import('../lib/artifacts/prompts.ts');
    const { referenceSteps } = await import('../lib/relevance/prompts.ts');
    const { stratifiedSample } = await import('../lib/relevance/subsample.ts');
    const { writeJson } = await import('../lib/io/json.ts');
    const { loadKnowledgeGraph } = await import('../lib/relevance/kg.ts');
    const { lexicalBaseline } = await import('../lib/relevance/baseline.ts');
    const { evalFragment } = await import('./fragment.ts');

    const promptsDir = ctx.inputs.one('prompts').dir;
    const [train, dev] = [await readPromptRecords(promptsDir, 'train'), await readPromptRecords(promptsDir, 'dev')];
    const whole = p.split === 'dev' ? dev : await readPromptRecords(promptsDir, 'test');
    if (whole.length === 0) throw new Error(`${promptsDir}/${p.split}.jsonl has no prompts to evaluate`);
    // Thresholds are tuned on dev, unless dev is what is evaluated.
    const tuningSet = tuningSplitOf(p.split) === 'train' ? train : dev;
    // The sample's stream name predates the split param, so test samples stay what they were.
    const sampled = (split: 'dev' | 'test', all: PromptRecord[]) =>
      p.limit <= 0 || p.limit >= all.length
        ? all
        : p.stratify
          ? stratifiedSample(all, p.limit, (r) => r.example.label, ctx.rng.fork(`${split}-sample`))
          : ctx.rng.fork(`${split}-sample`).shuffle([...all]).slice(0, p.limit);
    const examples = sampled(p.split, whole);
    if (examples.length < whole.length) ctx.log.info(`${p.split}: ${examples.length} of ${whole.length} pairs (limit ${p.limit}, ${p.stratify ? 'stratified by gold grade' : 'uniform'})`);
    // What the delivered judge is fitted on: dev (the same sample when dev is what is evaluated).
    const fitting = p.split === 'dev' ? examples : sampled('dev', dev);
    const checkpoints = ctx.inputs.many('checkpoint');
    if (checkpoints.length === 0 && !p.baseline) throw new Error('eval has nothing to evaluate: no checkpoint in needs and baseline: false');

    const kg = await loadKnowledgeGraph(ctx.inputs.one('kg').dir);
    const decoded = p.split === 'dev' ? examples : [...examples, ...fitting];
    const references = referenceSteps(decoded, kg);

    // One bootstrap stream per model, so adding a model leaves the others' intervals unchanged.
    const bootstrapStream = (model: string): (() => number) => {
      const rng = ctx.rng.fork(`bootstrap-${model}`);
      return () => rng.next();
    };

    // Fitted once: its own row and the pooled rows use the same model.
    const { fitLearnedBaseline } = await import('../lib/relevance/learned-baseline.ts');
    const learnedModel = p.learned_baseline || p.lexical_pool !== undefined || checkpoints.length > 0 ? fitLearnedBaseline(train.map((r) => r.example)) : undefined;

    const total = decoded.length * checkpoints.length;
    let done = 0;
    ctx.progress.update(0, total, 'examples');
    const metrics: EvalMetrics = { split: p.split, examples: examples.length, checkpoints: {}, baseline: null, comparison: [] };
    const predictions: Prediction[] = [];
    let engine: EngineRecord | undefined;
    // Each checkpoint's predictions on the fitting examples (dev), for choosing the delivered judge.
    const fittingRows = new Map<string, Prediction[]>();
    // A judge's row pooled with the learned lexical model, after the judge's own row.
    const addPooled = (judge: string, judged: readonly Prediction[]) => {
      if (p.lexical_pool === undefined || !learnedModel) return;
      const name = `${judge}+lexical`;
      const rows = pooledRows(name, judged, examples, learnedModel, p.lexical_pool);
      const pooled = summarise(rows, bootstrapStream(name));
      (metrics.pooled ??= {})[name] = { ...pooled, checkpoint: judge, weight: p.lexical_pool };
      metrics.comparison.push(comparisonRow(name, 'pooled', pooled));
      predictions.push(...rows);
      ctx.log.info(`${name} (pooled, lexical weight ${p.lexical_pool}): ${headline(pooled)}`);
    };
    for (const checkpoint of checkpoints) {
      const evaluated = await evaluateCheckpoint(ctx, checkpoint.stage, checkpoint.dir, decoded, tuningSet, references, (n) => {
        done += n;
        ctx.progress.update(done, total, 'examples');
      });
      engine = evaluated.engine;
      const all = evaluated.result.predictions;
      fittingRows.set(checkpoint.stage, p.split === 'dev' ? all : all.slice(examples.length));
      const result = { ...evaluated.result, predictions: all.slice(0, examples.length) };
      const summary = summarise(result.predictions, bootstrapStream(checkpoint.stage));
      metrics.checkpoints[checkpoint.stage] = { ...summary, ...(result.threshold ? { threshold: result.threshold } : {}), promptTooLong: result.promptTooLong };
      metrics.comparison.push(comparisonRow(checkpoint.stage, 'checkpoint', summary));
      predictions.push(...result.predictions);
      ctx.log.info(`${checkpoint.stage}: ${headline(summary)}, format ${summary.formatValidity?.toFixed(4)}`);
      addPooled(checkpoint.stage, result.predictions);
    }

    if (p.ensemble) {
      const rows = ensembleRows(p.ensemble, predictions, checkpoints.map((c) => c.stage));
      const summary = summarise(rows, bootstrapStream('ensemble'));
      metrics.ensemble = { ...summary, members: p.ensemble };
      metrics.comparison.push(comparisonRow('ensemble', 'ensemble', summary));
      predictions.push(...rows);
      ctx.log.info(`ensemble of ${p.ensemble.join(', ')}: ${headline(summary)}`);
      addPooled('ensemble', rows);
    }

    if (checkpoints.length > 0 && learnedModel) {
      const evaluatedRows = new Map(checkpoints.map((c) => [c.stage, predictions.filter((r) => r.model === c.stage)]));
      const rows = deliveredRows(ctx, fitting, examples, fittingRows, evaluatedRows, learnedModel, metrics, bootstrapStream('delivered'));
      predictions.push(...rows);
    }

    // Distilled judges (the distill stage's DeepBoW): one more row each, scored like the baseline.
    for (const distilled of ctx.inputs.many('distilled')) {
      const rows = await distilledPredictions(distilled.stage, distilled.dir, examples, kg);
      const summary = summarise(rows, bootstrapStream(distilled.stage));
      metrics.comparison.push(comparisonRow(distilled.stage, 'distilled', summary));
      predictions.push(...rows);
      ctx.log.info(`${distilled.stage} (distilled): ${headline(summary)}`);
    }

    if (p.baseline) {
      const fitted = lexicalBaseline(
        train.map((r) => r.example),
        tuningSet.map((r) => r.example),
      );
      const baseline = baselinePredictions('baseline', examples, fitted.predict);
      const summary = summarise(baseline, bootstrapStream('baseline'));
      metrics.baseline = { ...summary, thresholds: fitted.thresholds, tuningMacroF1: fitted.tuningMacroF1, tuningSplit: tuningSplitOf(p.split) };
      ctx.log.info(`baseline: ${headline(summary)}`);
      metrics.comparison.push(comparisonRow('baseline', 'baseline', summary));
      predictions.push(...baseline);
    }

    if (p.learned_baseline && learnedModel) {
      const learned = baselinePredictions('learned-baseline', examples, learnedModel.predict);
      const summary = summarise(learned, bootstrapStream('learned-baseline'));
      metrics.learnedBaseline = { ...summary, trainMacroF1: learnedModel.trainMacroF1 };
      ctx.log.info(`learned-baseline: ${headline(summary)}`);
      metrics.comparison.push(comparisonRow('learned-baseline', 'baseline', summary));
      predictions.push(...learned);
    }

    // Every collapsed model is named, not only a collapsed delivered judge: a checkpoint that answers one
    // grade still feeds the ensemble, the pool and the next stage (issue: "never deliver a degenerate judge
    // silently"). The delivered judge's own check is the stage's quality check below.
    const collapsed = metrics.comparison.filter((row) => row.degenerate && row.kind !== 'delivered');
    if (collapsed.length > 0) ctx.log.warn(`degenerate on ${metrics.split}: ${collapsed.map((row) => row.model).join(', ')} (one grade for most pairs, or QWK <= ${DEGENERATE_QWK}; the report marks them)`);
    // One line, not one per model: a step axis over models would draw a meaningless curve.
    ctx.metrics.log(0, Object.fromEntries(metrics.comparison.flatMap((row) => (['acc2', 'acc4', 'macroF1', 'qwk'] as const).map((k) => [`${row.model}.${k}`, row[k]]))));
    await writeJson(join(ctx.outDir, 'metrics.json'), metrics);
    await writeJsonl(join(ctx.outDir, 'predictions.jsonl'), predictions);
    await writeJson(join(ctx.outDir, REPORT_FRAGMENT_FILE), evalFragment(metrics, predictions, p.report_samples));
    return {
      ...(engine ? { engine } : {}),
      ...(metrics.degeneracy ? { checks: [degeneracyCheck(metrics.degeneracy, metrics.split)] } : {}),
      metrics: {
        examples: examples.length,
        ...(metrics.degenerate !== undefined ? { degenerate: metrics.degenerate } : {}),
        ...Object.fromEntries(metrics.comparison.flatMap((row) => [[`${row.model}.acc4`, row.acc4], [`${row.model}.macroF1`, row.macroF1], [`${row.model}.qwk`, row.qwk]])),
      },
    };
  },
});

/**
 * The delivered judge (delivery.ts): chosen on `fitting` (dev) by cross-fitting, its row on the
 * split evaluated (the cross-fitted dev predictions when that is dev; when it is test, the judge as
 * fitted on all of dev, applied to test), and the degeneracy check of that row. Writes
 * `metrics.delivered`, `metrics.degenerate` and `metrics.degeneracy`, adds the comparison row
 * `delivered`, logs a warning when it is degenerate, and returns its predictions.
 */
function deliveredRows(
  ctx: StageContext<Params>,
  fitting: readonly PromptRecord[],
  examples: readonly PromptRecord[],
  fittingRows: ReadonlyMap<string, Prediction[]>,
  evaluatedRows: ReadonlyMap<string, Prediction[]>,
  lexical: LearnedBaseline,
  metrics: EvalMetrics,
  random: () => number,
): Prediction[] {
  const inputs = (records: readonly PromptRecord[], checkpoints: ReadonlyMap<string, Prediction[]>): JudgeInputs => ({
    examples: records.map((r) => r.example),
    checkpoints,
    lexical: records.map((r) => lexical.probabilities(r.example)),
  });
  const stream = (name: string): (() => number) => {
    const rng = ctx.rng.fork(name);
    return () => rng.next();
  };
  const fittingInputs = inputs(fitting, fittingRows);
  const chosen = chooseDelivered('delivered', fittingInputs, ctx.params.ensemble ?? [], stream('delivery-folds'));
  const rows = metrics.split === 'dev' ? chosen.predictions : judgePredictions('delivered', chosen.delivered.definition, inputs(examples, evaluatedRows));
  const summary = summarise(rows, random);
  const { delivered } = chosen;
  const degeneracy = judgeDegeneracy(rows.map((r) => ({ gold: r.gold, predicted: r.predicted ?? undefined })));
  // The honest dev estimate of the procedure that chose it (fewer than 2 dev queries: none).
  const queryCount = new Set(fitting.map((r) => r.example.query)).size;
  const nested = queryCount >= 2 ? nestedSelection('delivered-nested', fittingInputs, ctx.params.ensemble ?? [], stream('delivery-nested')) : undefined;
  const nestedSummary = nested ? summarise(nested.predictions, stream('bootstrap-delivered-nested')) : undefined;
  metrics.delivered = {
    ...delivered,
    summary,
    ...(nested && nestedSummary ? { nested: { ...nested.nested, summary: nestedSummary, degeneracy: judgeDegeneracy(nested.predictions.map((r) => ({ gold: r.gold, predicted: r.predicted ?? undefined }))) } } : {}),
  };
  metrics.degenerate = degeneracy.degenerate;
  metrics.degeneracy = degeneracy;
  metrics.comparison.push(comparisonRow('delivered', 'delivered', summary));
  const cross = delivered.crossFitted;
  ctx.log.info(
    `delivered: ${delivered.name}, chosen among ${delivered.candidates} candidates on ${delivered.fittedOn.examples} dev examples (${delivered.folds.count} query folds); ` +
      `cross-fitted dev macro-F1 ${cross.macroF1.toFixed(4)}, QWK ${cross.qwk === null ? 'n/a' : cross.qwk.toFixed(4)}; on ${metrics.split}: ${headline(summary)}`,
  );
  if (nestedSummary && nested) ctx.log.info(`delivered, the selection itself by nested cross-validation on dev (outer folds ${nested.nested.folds.examples.join('/')} pairs): ${headline(nestedSummary)}`);
  if (degeneracy.degenerate) ctx.log.warn(`the delivered judge (${delivered.name}) is degenerate on ${metrics.split}: ${degeneracy.reasons.join('; ')} (predicted: ${describeShares(degeneracy.predictedShares)})`);
  return rows;
}

/** The eval stage's quality check: the delivered judge is not degenerate. */
function degeneracyCheck(degeneracy: Degeneracy, split: string): QualityCheck {
  const shares = describeShares(degeneracy.predictedShares);
  return {
    name: 'delivered-judge-not-degenerate',
    passed: !degeneracy.degenerate,
    message: degeneracy.degenerate ? `the delivered judge is degenerate on ${split}: ${degeneracy.reasons.join('; ')} (predicted: ${shares})` : `predicted: ${shares}`,
  };
}

/** Where thresholds are tuned: never on the split being scored (train when dev is, dev when test is). */
function tuningSplitOf(scored: 'dev' | 'test'): Split {
  return scored === 'dev' ? 'train' : 'dev';
}
