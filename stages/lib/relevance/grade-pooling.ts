/**
 * From a judge's grade probabilities to one grade, and judges pooled: the renormalised answer-token
 * probabilities (judge/grade-probs.ts reads them from a model), the logarithmic opinion pool
 * (lexical baseline, ensembles), the median / cumulative partition (TaoSR1's CumPT), expected-grade
 * cut points, and the delivered judge's definition. Pure arithmetic over Record<Grade, number>.
 */
import { classificationMetrics } from './grade-agreement.ts';
import { gradeFor } from './baseline.ts';
import { GRADES, type Grade } from './types.ts';

/** Probabilities renormalised over the four grades (the answer token could be anything else). */
export function normaliseGradeProbs(logprobs: Record<Grade, number>): Record<Grade, number> {
  const top = Math.max(...GRADES.map((g) => logprobs[g]));
  const weights = GRADES.map((g) => Math.exp(logprobs[g] - top));
  const total = weights.reduce((a, b) => a + b, 0);
  return Object.fromEntries(GRADES.map((g, i) => [g, (weights[i] as number) / total])) as Record<Grade, number>;
}

/**
 * The logarithmic opinion pool: p(g) proportional to the product of each distribution(g)^weight, the
 * weighted geometric mean renormalised (Genest & Zidek 1986, "Combining probability distributions",
 * section 3). Unlike a linear mixture it is externally Bayesian, and a grade any weighted member
 * rules out stays ruled out. Weights are non-negative and sum to 1.
 */
export function logarithmicPool(members: readonly { probs: Record<Grade, number>; weight: number }[]): Record<Grade, number> {
  // Math.pow(0, 0) is 1: a member at weight 0 does not count, its zeros included, as it should not.
  const pooled = GRADES.map((g) => members.reduce((product, m) => product * Math.pow(m.probs[g], m.weight), 1));
  const total = pooled.reduce((a, b) => a + b, 0);
  if (!(total > 0)) throw new RangeError('logarithmicPool: the distributions give no grade a positive probability together');
  return Object.fromEntries(GRADES.map((g, i) => [g, (pooled[i] as number) / total])) as Record<Grade, number>;
}

/**
 * The judge's grade probabilities pooled with the learned lexical baseline's, weight `weight` on the
 * lexical model (logarithmicPool). eval's `lexical_pool` and the served judge's `lexicalPool` pool
 * this way: the evidence a thousand pairs teach a small model only loosely, lexical overlap, is then
 * weighed by a model fitted to it.
 */
export function poolGradeProbs(judge: Record<Grade, number>, lexical: Record<Grade, number>, weight: number): Record<Grade, number> {
  if (!(weight >= 0 && weight <= 1)) throw new RangeError(`poolGradeProbs: weight must be in [0, 1], got ${weight}`);
  return logarithmicPool([
    { probs: judge, weight: 1 - weight },
    { probs: lexical, weight },
  ]);
}

/**
 * An ensemble's grade probabilities: the equal-weight logarithmic pool of its members'. Members
 * trained from different initialisations err differently; pooling them lowers the variance a model
 * trained from scratch on a thousand pairs has from its seed alone (Lakshminarayanan et al. 2017,
 * "Simple and scalable predictive uncertainty estimation using deep ensembles").
 */
export function ensembleGradeProbs(members: readonly Record<Grade, number>[]): Record<Grade, number> {
  if (members.length === 0) throw new RangeError('ensembleGradeProbs: no member has grade probabilities');
  return logarithmicPool(members.map((probs) => ({ probs, weight: 1 / members.length })));
}

/** The grade with the highest probability (the lower grade on a tie). */
export function mostProbableGrade(probs: Record<Grade, number>): Grade {
  return GRADES.reduce((best, g) => (probs[g] > probs[best] ? g : best), GRADES[0] as Grade);
}

/**
 * How a think-first judge's grade is read (eval's `grade`, and the served judge's): the answer it
 * wrote, or the median of its answer probabilities after the reasoning it wrote (`cumulativeGrade`
 * at 1/2): the grade with the least expected distance to the human's, relevant (L3/L4) exactly when
 * relevant is more likely than not.
 */
export const GRADE_READINGS = ['answer', 'median'] as const;
export type GradeReading = (typeof GRADE_READINGS)[number];

/** L4 down to L1: the order the cumulative partition walks. */
export const DESCENDING_GRADES: readonly Grade[] = [...GRADES].reverse();

/** The cumulative partition's threshold at which it gives the median grade (`grade: median`). */
export const MEDIAN_THRESHOLD = 0.5;

/**
 * TaoSR1's cumulative-probability partition (CumPT): walk down from the best grade and take the first
 * grade g whose cumulative probability p(L4) + ... + p(g) reaches `threshold`. At MEDIAN_THRESHOLD it
 * is the median grade.
 */
export function cumulativeGrade(probs: Record<Grade, number>, threshold: number): Grade {
  let cumulative = 0;
  for (const grade of DESCENDING_GRADES) {
    cumulative += probs[grade];
    if (cumulative >= threshold) return grade;
  }
  return GRADES[0] as Grade; // rounding: the four probabilities may sum to just under 1
}

/**
 * The pooled judge's reading (eval's `<checkpoint>+lexical` row, the served judge's `lexicalPool`):
 * the judge's grade probabilities pooled with the lexical model's (poolGradeProbs), and their median.
 */
export function pooledReading(judge: Record<Grade, number>, lexical: Record<Grade, number>, weight: number): { probs: Record<Grade, number>; grade: Grade } {
  const probs = poolGradeProbs(judge, lexical, weight);
  return { probs, grade: cumulativeGrade(probs, MEDIAN_THRESHOLD) };
}

/** Examples an answer_first judge's threshold is tuned on, at most: eval's `dev_limit` default, and the served judge's. */
export const THRESHOLD_TUNING_EXAMPLES = 200;

/**
 * The τ in (0, 1] with the best macro-F1 on the tuning examples (ties: the smallest): how an
 * answer_first judge's single threshold is tuned on dev, trading precision of the high grades
 * against recall (TaoSR1's CumPT). Predictions only change where τ crosses an example's cumulative
 * sum, so those sums are the only candidates worth trying. A dozen lines specific to this task; no
 * library implements it.
 */
export function tuneCumulativeThreshold(dev: readonly { gold: Grade; probs: Record<Grade, number> }[]): { threshold: number; macroF1: number } {
  if (dev.length === 0) throw new Error('tuneCumulativeThreshold: no dev examples to tune the threshold on');
  const candidates = new Set<number>([1]);
  for (const { probs } of dev) {
    let cumulative = 0;
    for (const grade of DESCENDING_GRADES) {
      cumulative += probs[grade];
      if (cumulative > 0 && cumulative <= 1) candidates.add(cumulative);
    }
  }
  let best = { threshold: 1, macroF1: -1 };
  for (const threshold of [...candidates].sort((a, b) => a - b)) {
    const { macroF1 } = classificationMetrics(dev.map((e) => ({ gold: e.gold, predicted: cumulativeGrade(e.probs, threshold) })));
    if (macroF1 > best.macroF1) best = { threshold, macroF1 };
  }
  return best;
}

/** The expected grade with L1..L4 read as 1..4: the ordinal score a judge's cut points cut. */
export function expectedGrade(probs: Record<Grade, number>): number {
  return GRADES.reduce((sum, g, k) => sum + (k + 1) * probs[g], 0);
}

/**
 * The grade at ordinal cut points on the expected grade (eval's delivered judge under the
 * `cut-points` rule, fitted for macro-F1 on dev like the lexical baseline's thresholds): unlike the
 * median, cut points fitted on the user's data can move a judge whose probabilities lean on the
 * majority grade back across the grade boundaries the human labels draw.
 */
export function cutPointGrade(probs: Record<Grade, number>, cutPoints: readonly number[]): Grade {
  return gradeFor(expectedGrade(probs), cutPoints);
}

/**
 * How eval's delivered judge turns grade probabilities into a grade: the written answer, the median
 * (cumulativeGrade at MEDIAN_THRESHOLD), or ordinal cut points on the expected grade (cutPointGrade).
 */
export const DECISION_RULES = ['answer', 'median', 'cut-points'] as const;
export type DecisionRule = (typeof DECISION_RULES)[number];

/** A judge as eval delivers it and `pipeline score --delivered` serves it. */
export interface JudgeDefinition {
  /** Checkpoint stages judging as one (their grade probabilities' logarithmic pool); [] with lexicalWeight 1: the lexical model alone. */
  members: string[];
  /** The members' weights in their pool (equal: the subsets tried are equal-weight). */
  memberWeights: number[];
  /** Weight of the learned lexical baseline in the pool with the members' probabilities (poolGradeProbs). */
  lexicalWeight: number;
  rule: DecisionRule;
  /** rule cut-points: [t1, t2, t3] on the expected grade (gradeFor), fitted on all the fitting examples. */
  cutPoints?: [number, number, number];
}
