/**
 * The judge eval delivers, chosen on the user's own held-out data, never on test: which checkpoint
 * or the whole ensemble (equal weights), the weight of the learned lexical baseline in the
 * logarithmic pool (0 to 1; 1 is the lexical model alone, when the LLM adds nothing), and the
 * decision rule (the written answer, the median of the grade probabilities, or ordinal cut points
 * on the expected grade fitted for macro-F1 like the lexical baseline's thresholds). A DPO or GRPO
 * checkpoint that lowers the held-out figures is not chosen just because it ran last.
 *
 * Cross-fitting: the fitting examples (dev) are split by query into folds balanced by pair count
 * and grade (delivery-folds.ts); a candidate's cut points are fitted on the other folds and applied
 * to each held-out fold, so every fitting example is scored by settings fitted without it. The
 * candidate with the best cross-fitted mean of macro-F1 and QWK is delivered (degenerate ones only
 * when every candidate is; with a one-SE allowance, the simplest within it), with its cut points
 * then fitted on all the fitting examples. Its cross-fitted figures are optimistic, since the
 * choice among candidates is made on them; nestedSelection estimates the whole procedure honestly.
 */
import { classificationMetrics, judgeDegeneracy, std, type Degeneracy } from '../lib/relevance/grade-agreement.ts';
import { cumulativeGrade, cutPointGrade, ensembleGradeProbs, expectedGrade, MEDIAN_THRESHOLD, poolGradeProbs, type DecisionRule, type JudgeDefinition } from '../lib/relevance/grade-pooling.ts';
import { fitCutPoints } from '../lib/relevance/baseline.ts';
import type { Grade, RelevanceExample } from '../lib/relevance/types.ts';
import { balancedQueryFolds } from './delivery-folds.ts';
import { completionlessPrediction, exampleFields, type Prediction } from './predictions.ts';

export type { JudgeDefinition };

/**
 * The selection procedure's own settings. Choosing among many candidates on a 128-pair dev set
 * rewards the one that fits its noise: the candidate set is kept small and structured, and a
 * one-standard-error rule (Hastie, Tibshirani & Friedman, ESL §7.10) takes the simplest candidate
 * whose cross-fitted objective is within `seMultiple` standard errors of the best one's.
 */
export interface SelectionSettings {
  /** Pool weights of the lexical model tried besides 1 (the lexical model alone). */
  lexicalWeights: readonly number[];
  /** 'whole': each checkpoint and the whole ensemble; 'subsets': also every ensemble subset of two or more. */
  ensembles: 'whole' | 'subsets';
  /** How many standard errors below the best objective the simplest candidate may fall; 0 takes the best. */
  seMultiple: number;
}

const TENTHS: readonly number[] = Array.from({ length: 10 }, (_, i) => i / 10);

/**
 * The shipped settings, chosen by leave-one-dataset-out over the four non-test sets at hand
 * (scripts/delivery-lodo.ts; README, "The delivered judge"): holding out each set in turn, the
 * setting with the best mean nested dev objective on the other three was, every time, pool weights
 * a tenth apart, the whole ensemble only (no subsets) and no SE allowance; the one-SE rule, at 0.25
 * to 2 SE, and a coarser weight grid scored lower nested figures on average.
 */
export const SELECTION: SelectionSettings = { lexicalWeights: TENTHS, ensembles: 'whole', seMultiple: 0 };

/** eval's earlier procedure (every ensemble subset of two or more besides each checkpoint), kept for comparison. */
export const EXHAUSTIVE_SELECTION: SelectionSettings = { lexicalWeights: TENTHS, ensembles: 'subsets', seMultiple: 0 };

/** Folds of the fitting examples (by query); fewer when there are fewer queries. */
export const CROSS_FIT_FOLDS = 5;

/** Query-bootstrap resamples for the standard error of the best candidate's objective. */
const SE_RESAMPLES = 200;

/** With `ensembles: 'subsets'`, every subset of two or more is a candidate: 2^m - m - 1, so m is capped. */
const MAX_ENSEMBLE_MEMBERS = 6;

/** Figures of a candidate's cross-fitted predictions. */
export interface CrossFittedFigures {
  acc2: number;
  acc4: number;
  macroF1: number;
  qwk: number | null;
  /** (macro-F1 + QWK) / 2, QWK null read as 0: what the candidates are ranked by. */
  objective: number;
  degenerate: boolean;
}

export interface Delivered {
  /** e.g. "rl + sft_2 + sft_3, lexical 0.25, cut points". */
  name: string;
  definition: JudgeDefinition;
  fittedOn: { split: 'dev'; examples: number; queries: number };
  folds: {
    count: number;
    scheme: string;
    examples: number[];
    /** rule cut-points: the cut points fitted without each fold, in fold order. */
    cutPoints?: [number, number, number][];
  };
  /** The delivered judge's dev figures: each fold scored with settings fitted on the others. */
  crossFitted: CrossFittedFigures;
  degeneracy: Degeneracy;
  candidates: number;
  settings: SelectionSettings;
  /** The one-standard-error rule: the best candidate, its objective's standard error, and the floor the delivered one cleared. */
  oneSe: { best: string; bestObjective: number; standardError: number; floor: number };
  /** The best candidates by the cross-fitted objective, the delivered one first. */
  ranking: ({ name: string } & CrossFittedFigures)[];
}

/**
 * An honest estimate of the selection procedure itself (nested cross-validation): dev split by
 * query into outer folds; for each, the whole selection (its own inner folds, the one-SE rule, the
 * cut points) re-run on the other outer folds and the judge it chose applied to the held-out one.
 * The cross-fitted figures of the delivered candidate are optimistic (the choice among candidates
 * saw them); these are not.
 */
export interface NestedEstimate {
  folds: { count: number; scheme: string; examples: number[] };
  /** The judge chosen without each outer fold, in fold order. */
  chosen: string[];
}

/** What a judge is fitted or applied on: examples in order, each checkpoint's predictions and the lexical model's probabilities in the same order. */
export interface JudgeInputs {
  examples: readonly RelevanceExample[];
  checkpoints: ReadonlyMap<string, readonly Prediction[]>;
  lexical: readonly Record<Grade, number>[];
}

interface Candidate {
  members: string[];
  lexicalWeight: number;
  rule: DecisionRule;
}

export function describeJudge(judge: Pick<JudgeDefinition, 'members' | 'lexicalWeight' | 'rule'>): string {
  const rule = judge.rule === 'cut-points' ? 'cut points' : judge.rule === 'answer' ? 'written answer' : 'median';
  if (judge.lexicalWeight === 1) return `lexical alone, ${rule}`;
  return `${judge.members.join(' + ')}${judge.lexicalWeight > 0 ? `, lexical ${judge.lexicalWeight}` : ''}, ${rule}`;
}

/** Subsets of two or more of `members`, in order of size then position. */
function subsets(members: readonly string[]): string[][] {
  const all: string[][] = [];
  for (let mask = 1; mask < 1 << members.length; mask++) {
    const subset = members.filter((_, i) => mask & (1 << i));
    if (subset.length >= 2) all.push(subset);
  }
  return all.sort((a, b) => a.length - b.length);
}

/**
 * Every candidate, simplest first (the one-SE rule takes the first within reach of the best): the
 * lexical model alone, then by falling lexical weight, each checkpoint before the ensemble, and
 * within a judge the rules that fit nothing (written answer, median) before cut points.
 */
function candidates(checkpoints: readonly string[], ensemble: readonly string[], hasAnswer: (checkpoint: string) => boolean, settings: SelectionSettings): Candidate[] {
  const ensembles = ensemble.length < 2 ? [] : settings.ensembles === 'whole' ? [[...ensemble]] : subsets(ensemble);
  if (settings.ensembles === 'subsets' && ensemble.length > MAX_ENSEMBLE_MEMBERS) throw new Error(`eval: an ensemble of ${ensemble.length} members; at most ${MAX_ENSEMBLE_MEMBERS} (every subset is a candidate)`);
  const list: Candidate[] = [
    { members: [], lexicalWeight: 1, rule: 'median' },
    { members: [], lexicalWeight: 1, rule: 'cut-points' },
  ];
  const weights = [...new Set(settings.lexicalWeights.filter((w) => w >= 0 && w < 1))].sort((a, b) => b - a);
  for (const lexicalWeight of weights) {
    for (const members of [...checkpoints.map((c) => [c]), ...ensembles]) {
      if (lexicalWeight === 0 && members.length === 1 && hasAnswer(members[0] as string)) list.push({ members, lexicalWeight, rule: 'answer' });
      list.push({ members, lexicalWeight, rule: 'median' }, { members, lexicalWeight, rule: 'cut-points' });
    }
  }
  return list;
}

/** A candidate's grade probabilities per example (undefined where no member could read the pair), or its written answers. */
function readings(candidate: Candidate, inputs: JudgeInputs): { probs: (Record<Grade, number> | undefined)[]; answers?: (Grade | null)[] } {
  const rows = candidate.members.map((member) => {
    const own = inputs.checkpoints.get(member);
    if (!own) throw new Error(`eval: delivered judge member ${member} has no predictions`);
    return own;
  });
  if (candidate.rule === 'answer') return { probs: [], answers: (rows[0] as readonly Prediction[]).map((p) => p.answer ?? null) };
  const probs = inputs.examples.map((_, i) => {
    const lexical = inputs.lexical[i] as Record<Grade, number>;
    if (candidate.lexicalWeight === 1) return lexical;
    const read = rows.flatMap((own) => ((own[i] as Prediction).gradeProbs ? [(own[i] as Prediction).gradeProbs as Record<Grade, number>] : []));
    if (read.length === 0) return undefined;
    const judged = read.length === 1 ? (read[0] as Record<Grade, number>) : ensembleGradeProbs(read);
    return candidate.lexicalWeight === 0 ? judged : poolGradeProbs(judged, lexical, candidate.lexicalWeight);
  });
  return { probs };
}

function figures(golds: readonly Grade[], predicted: readonly (Grade | null)[]): CrossFittedFigures {
  const pairs = golds.map((gold, i) => ({ gold, predicted: predicted[i] ?? undefined }));
  const m = classificationMetrics(pairs);
  return { acc2: m.acc2, acc4: m.acc4, macroF1: m.macroF1, qwk: m.qwk, objective: (m.macroF1 + (m.qwk ?? 0)) / 2, degenerate: judgeDegeneracy(pairs).degenerate };
}

/** Cut points fitted on the examples `use` admits that have probabilities. */
function fitOn(probs: readonly (Record<Grade, number> | undefined)[], golds: readonly Grade[], use: (i: number) => boolean): [number, number, number] | undefined {
  const scored = probs.flatMap((p, i) => (p && use(i) ? [{ score: expectedGrade(p), gold: golds[i] as Grade }] : []));
  return scored.length === 0 ? undefined : fitCutPoints(scored).thresholds;
}

function gradeAt(rule: DecisionRule, probs: Record<Grade, number> | undefined, cutPoints: readonly number[] | undefined): Grade | null {
  if (!probs) return null;
  if (rule === 'cut-points') return cutPoints ? cutPointGrade(probs, cutPoints) : null;
  return cumulativeGrade(probs, MEDIAN_THRESHOLD);
}

/** A candidate's cross-fitted predictions: each fold graded with cut points fitted on the others. */
function crossFit(candidate: Candidate, inputs: JudgeInputs, folds: readonly number[], foldCount: number): { predicted: (Grade | null)[]; cutPoints?: [number, number, number][] } {
  const read = readings(candidate, inputs);
  if (read.answers) return { predicted: read.answers };
  if (candidate.rule !== 'cut-points') return { predicted: read.probs.map((p) => gradeAt(candidate.rule, p, undefined)) };
  const golds = inputs.examples.map((e) => e.label);
  const perFold = Array.from({ length: foldCount }, (_, f) => fitOn(read.probs, golds, (i) => foldCount === 1 || folds[i] !== f));
  return {
    predicted: read.probs.map((p, i) => gradeAt('cut-points', p, perFold[folds[i] as number])),
    cutPoints: perFold.filter((c): c is [number, number, number] => c !== undefined),
  };
}

/** The judge's predictions on `inputs` as eval rows named `model`. */
export function judgePredictions(model: string, definition: JudgeDefinition, inputs: JudgeInputs, predicted?: readonly (Grade | null)[]): Prediction[] {
  const read = readings(definition, inputs);
  const members = definition.members.map((m) => inputs.checkpoints.get(m) as readonly Prediction[]);
  return inputs.examples.map((example, i): Prediction => {
    const probs = read.probs[i];
    const grade = predicted ? (predicted[i] ?? null) : read.answers ? (read.answers[i] ?? null) : gradeAt(definition.rule, probs, definition.cutPoints);
    const latencyMs = members.reduce((sum, own) => sum + (own[i] as Prediction).latencyMs, 0);
    return completionlessPrediction(model, exampleFields(example), grade, latencyMs, definition.rule !== 'answer' ? probs : undefined);
  });
}

/** `inputs` restricted to the examples `keep` admits, in order. */
function subsetInputs(inputs: JudgeInputs, keep: (i: number) => boolean): JudgeInputs {
  const pick = <T>(rows: readonly T[]) => rows.filter((_, i) => keep(i));
  return { examples: pick(inputs.examples), checkpoints: new Map([...inputs.checkpoints].map(([name, rows]) => [name, pick(rows)])), lexical: pick(inputs.lexical) };
}

/** The standard deviation of the objective over query-bootstrap resamples of `predicted` (queries are the unit dev was sampled in). */
function objectiveStandardError(examples: readonly RelevanceExample[], predicted: readonly (Grade | null)[], random: () => number): number {
  const byQuery = new Map<string, number[]>();
  examples.forEach((e, i) => byQuery.set(e.query, [...(byQuery.get(e.query) ?? []), i]));
  const groups = [...byQuery.values()];
  if (groups.length < 2) return 0;
  const values = Array.from({ length: SE_RESAMPLES }, () => {
    const rows = Array.from({ length: groups.length }, () => groups[Math.floor(random() * groups.length)] as number[]).flat();
    return figures(rows.map((i) => (examples[i] as RelevanceExample).label), rows.map((i) => predicted[i] ?? null)).objective;
  });
  return std(values);
}

interface Scored {
  candidate: Candidate;
  fitted: { predicted: (Grade | null)[]; cutPoints?: [number, number, number][] };
  figures: CrossFittedFigures;
}

interface Selection {
  chosen: Scored;
  best: Scored;
  standardError: number;
  floor: number;
  scored: Scored[];
  folds: number[];
  foldCount: number;
  definition: JudgeDefinition;
}

/** The whole selection on `fitting`: folds, every candidate cross-fitted, the one-SE rule, the chosen candidate's cut points fitted on all of `fitting`. */
function select(fitting: JudgeInputs, ensemble: readonly string[], random: () => number, settings: SelectionSettings): Selection {
  const checkpoints = [...fitting.checkpoints.keys()];
  const hasAnswer = (c: string) => (fitting.checkpoints.get(c) ?? []).some((p) => p.answer !== undefined);
  const list = candidates(checkpoints, ensemble, hasAnswer, settings);
  const queryCount = new Set(fitting.examples.map((e) => e.query)).size;
  const foldCount = Math.max(1, Math.min(CROSS_FIT_FOLDS, queryCount));
  const folds = balancedQueryFolds(fitting.examples, foldCount, random);
  const golds = fitting.examples.map((e) => e.label);
  const scored: Scored[] = list.map((candidate) => {
    const fitted = crossFit(candidate, fitting, folds, foldCount);
    return { candidate, fitted, figures: figures(golds, fitted.predicted) };
  });
  // Degenerate candidates only when every candidate is.
  const eligible = scored.some((s) => !s.figures.degenerate) ? scored.filter((s) => !s.figures.degenerate) : scored;
  const best = eligible.reduce((a, b) => (b.figures.objective > a.figures.objective + 1e-12 ? b : a));
  const standardError = settings.seMultiple > 0 ? objectiveStandardError(fitting.examples, best.fitted.predicted, random) : 0;
  const floor = best.figures.objective - settings.seMultiple * standardError;
  // `eligible` keeps the simplest-first order of `list`.
  const chosen = eligible.find((s) => s.figures.objective >= floor - 1e-12) as Scored;
  const { candidate } = chosen;
  const read = readings(candidate, fitting);
  const cutPoints = candidate.rule === 'cut-points' ? fitOn(read.probs, golds, () => true) : undefined;
  const definition: JudgeDefinition = {
    members: candidate.members,
    memberWeights: candidate.members.map(() => 1 / candidate.members.length),
    lexicalWeight: candidate.lexicalWeight,
    rule: candidate.rule,
    ...(cutPoints ? { cutPoints } : {}),
  };
  return { chosen, best, standardError, floor, scored, folds, foldCount, definition };
}

const FOLD_SCHEME = 'split by query into folds balanced by pair count and grade (largest query first, ties in a seeded order)';

/**
 * Chooses the delivered judge on `fitting` (dev) by cross-fitting over balanced query folds and the
 * one-SE rule (`random`, a seeded stream, orders tied queries and draws the SE's resamples), and
 * returns it with its cross-fitted predictions as eval rows named `model`.
 */
export function chooseDelivered(
  model: string,
  fitting: JudgeInputs,
  ensemble: readonly string[],
  random: () => number,
  settings: SelectionSettings = SELECTION,
): { delivered: Delivered; predictions: Prediction[] } {
  const selection = select(fitting, ensemble, random, settings);
  const { chosen, best, definition, folds, foldCount, scored } = selection;
  const golds = fitting.examples.map((e) => e.label);
  const predictions = judgePredictions(model, definition, fitting, chosen.fitted.predicted);
  const ranking = [chosen, ...[...scored].filter((s) => s !== chosen).sort((a, b) => b.figures.objective - a.figures.objective).slice(0, 9)];
  return {
    predictions,
    delivered: {
      name: describeJudge(definition),
      definition,
      fittedOn: { split: 'dev', examples: fitting.examples.length, queries: new Set(fitting.examples.map((e) => e.query)).size },
      folds: {
        count: foldCount,
        scheme: foldCount > 1 ? `dev ${FOLD_SCHEME}, ${foldCount} folds; each fold scored with cut points fitted on the others` : 'one query: no cross-fitting, the figures are fitting figures',
        examples: Array.from({ length: foldCount }, (_, f) => folds.filter((x) => x === f).length),
        ...(chosen.fitted.cutPoints ? { cutPoints: chosen.fitted.cutPoints } : {}),
      },
      crossFitted: chosen.figures,
      degeneracy: judgeDegeneracy(golds.map((gold, i) => ({ gold, predicted: chosen.fitted.predicted[i] ?? undefined }))),
      candidates: scored.length,
      settings,
      oneSe: { best: describeJudge(best.candidate), bestObjective: best.figures.objective, standardError: selection.standardError, floor: selection.floor },
      ranking: ranking.map((s) => ({ name: describeJudge(s.candidate), ...s.figures })),
    },
  };
}

/**
 * Nested cross-validation of the selection (NestedEstimate): its predictions on every fitting
 * example, each from the judge the whole selection chose without that example's outer fold, as
 * eval rows named `model`.
 */
export function nestedSelection(
  model: string,
  fitting: JudgeInputs,
  ensemble: readonly string[],
  random: () => number,
  settings: SelectionSettings = SELECTION,
): { nested: NestedEstimate; predictions: Prediction[] } {
  const queryCount = new Set(fitting.examples.map((e) => e.query)).size;
  const outerCount = Math.min(CROSS_FIT_FOLDS, queryCount);
  if (outerCount < 2) throw new Error(`eval: nested cross-validation needs dev pairs of at least 2 queries (${queryCount})`);
  const outer = balancedQueryFolds(fitting.examples, outerCount, random);
  const predictions = new Array<Prediction>(fitting.examples.length);
  const chosen: string[] = [];
  for (let f = 0; f < outerCount; f++) {
    const inner = select(subsetInputs(fitting, (i) => outer[i] !== f), ensemble, random, settings);
    chosen.push(describeJudge(inner.definition));
    const heldOut = fitting.examples.flatMap((_, i) => (outer[i] === f ? [i] : []));
    const rows = judgePredictions(model, inner.definition, subsetInputs(fitting, (i) => outer[i] === f));
    heldOut.forEach((i, k) => (predictions[i] = rows[k] as Prediction));
  }
  return {
    predictions,
    nested: {
      folds: { count: outerCount, scheme: `dev ${FOLD_SCHEME}; the whole selection re-run on the other ${outerCount - 1} (inner folds, one-SE rule, cut points) and applied to each`, examples: Array.from({ length: outerCount }, (_, f) => outer.filter((x) => x === f).length) },
      chosen,
    },
  };
}
