/**
 * The judge eval delivers, chosen on the user's own held-out data, never on test: which checkpoint
 * or which of the ensemble's members (equal weights over a subset), the weight of the learned
 * lexical baseline in the logarithmic pool (0 to 1; 1 is the lexical model alone, when the LLM adds
 * nothing), and the decision rule (the written answer, the median of the grade probabilities, or
 * ordinal cut points on the expected grade fitted for macro-F1 like the lexical baseline's
 * thresholds). A DPO or GRPO checkpoint that lowers the held-out figures is not chosen just because
 * it ran last.
 *
 * Cross-fitting: the fitting examples (dev) are split by query into folds; a candidate's cut points
 * are fitted on the other folds and applied to each held-out fold, so every fitting example is
 * scored by settings fitted without it. The candidate with the best cross-fitted mean of macro-F1
 * and QWK is delivered (degenerate ones only when every candidate is), with its cut points then
 * fitted on all the fitting examples. The figures recorded for it are its cross-fitted ones: the
 * settings inside a candidate are not fitted on the examples they score, though the choice among
 * candidates is made on those same figures (a mild optimism, the price of choosing on dev at all).
 */
import { classificationMetrics, judgeDegeneracy, type Degeneracy } from '../lib/relevance/grade-agreement.ts';
import { cumulativeGrade, cutPointGrade, ensembleGradeProbs, expectedGrade, MEDIAN_THRESHOLD, poolGradeProbs, type DecisionRule, type JudgeDefinition } from '../lib/relevance/grade-pooling.ts';
import { fitCutPoints } from '../lib/relevance/baseline.ts';
import type { Grade, RelevanceExample } from '../lib/relevance/types.ts';
import { completionlessPrediction, exampleFields, type Prediction } from './predictions.ts';

export type { JudgeDefinition };

/** The lexical pool weights tried: a tenth apart from the judge alone (0) to the lexical model alone (1). */
export const LEXICAL_WEIGHTS: readonly number[] = Array.from({ length: 11 }, (_, i) => i / 10);

/** Folds of the fitting examples (by query); fewer when there are fewer queries. */
export const CROSS_FIT_FOLDS = 5;

/** The ensemble subsets tried are all of its subsets of two or more: 2^m - m - 1, so m is capped. */
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
  /** e.g. "rl + sft_2 + sft_3, lexical 0.3, cut points". */
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
  /** The best candidates by the cross-fitted objective, the delivered one first. */
  ranking: ({ name: string } & CrossFittedFigures)[];
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

/** Every candidate, simplest first (ties keep the earlier): the lexical model alone, each checkpoint, then the ensemble's subsets. */
function candidates(checkpoints: readonly string[], ensemble: readonly string[], hasAnswer: (checkpoint: string) => boolean): Candidate[] {
  if (ensemble.length > MAX_ENSEMBLE_MEMBERS) throw new Error(`eval: an ensemble of ${ensemble.length} members; at most ${MAX_ENSEMBLE_MEMBERS} (every subset is a candidate)`);
  const list: Candidate[] = [
    { members: [], lexicalWeight: 1, rule: 'median' },
    { members: [], lexicalWeight: 1, rule: 'cut-points' },
  ];
  for (const members of [...checkpoints.map((c) => [c]), ...subsets(ensemble)]) {
    for (const lexicalWeight of LEXICAL_WEIGHTS.filter((w) => w < 1)) {
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

/** Fold of each example: the distinct queries shuffled by `shuffle` and dealt round-robin into `count` folds. */
export function queryFolds(queries: readonly string[], count: number, shuffle: <T>(items: T[]) => T[]): number[] {
  const distinct = shuffle([...new Set(queries)].sort());
  const foldOf = new Map(distinct.map((q, i) => [q, i % count]));
  return queries.map((q) => foldOf.get(q) as number);
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

/**
 * Chooses the delivered judge on `fitting` (dev) by cross-fitting over query folds (`shuffle`
 * seeds the folds), and returns it with its cross-fitted predictions as eval rows named `model`.
 */
export function chooseDelivered(
  model: string,
  fitting: JudgeInputs,
  ensemble: readonly string[],
  shuffle: <T>(items: T[]) => T[],
): { delivered: Delivered; predictions: Prediction[] } {
  const checkpoints = [...fitting.checkpoints.keys()];
  const hasAnswer = (c: string) => (fitting.checkpoints.get(c) ?? []).some((p) => p.answer !== undefined);
  const list = candidates(checkpoints, ensemble, hasAnswer);
  const queries = fitting.examples.map((e) => e.query);
  const queryCount = new Set(queries).size;
  const foldCount = Math.max(1, Math.min(CROSS_FIT_FOLDS, queryCount));
  const folds = queryFolds(queries, foldCount, shuffle);
  const golds = fitting.examples.map((e) => e.label);

  const scored = list.map((candidate) => {
    const fitted = crossFit(candidate, fitting, folds, foldCount);
    return { candidate, fitted, figures: figures(golds, fitted.predicted) };
  });
  const eligible = scored.some((s) => !s.figures.degenerate) ? scored.filter((s) => !s.figures.degenerate) : scored;
  const best = eligible.reduce((a, b) => (b.figures.objective > a.figures.objective + 1e-12 ? b : a));
  const { candidate } = best;
  const read = readings(candidate, fitting);
  const cutPoints = candidate.rule === 'cut-points' ? fitOn(read.probs, golds, () => true) : undefined;
  const definition: JudgeDefinition = {
    members: candidate.members,
    memberWeights: candidate.members.map(() => 1 / candidate.members.length),
    lexicalWeight: candidate.lexicalWeight,
    rule: candidate.rule,
    ...(cutPoints ? { cutPoints } : {}),
  };
  const predictions = judgePredictions(model, definition, fitting, best.fitted.predicted);
  const ranking = [best, ...[...scored].filter((s) => s !== best).sort((a, b) => b.figures.objective - a.figures.objective).slice(0, 9)];
  return {
    predictions,
    delivered: {
      name: describeJudge(definition),
      definition,
      fittedOn: { split: 'dev', examples: fitting.examples.length, queries: queryCount },
      folds: {
        count: foldCount,
        scheme: foldCount > 1 ? `dev split by query into ${foldCount} folds (queries shuffled with the stage's seed, dealt round-robin); each fold scored with cut points fitted on the others` : 'one query: no cross-fitting, the figures are fitting figures',
        examples: Array.from({ length: foldCount }, (_, f) => folds.filter((x) => x === f).length),
        ...(best.fitted.cutPoints ? { cutPoints: best.fitted.cutPoints } : {}),
      },
      crossFitted: best.figures,
      degeneracy: judgeDegeneracy(golds.map((gold, i) => ({ gold, predicted: best.fitted.predicted[i] ?? undefined }))),
      candidates: list.length,
      ranking: ranking.map((s) => ({ name: describeJudge(s.candidate), ...s.figures })),
    },
  };
}
