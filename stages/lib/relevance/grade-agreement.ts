/**
 * How well predicted grades agree with gold: the judge metrics as LORE / TaoSR report them: Acc@2
 * (binary: L3–L4 against L1–L2), Acc@4 (exact grade), macro-F1 over the four grades, per-grade precision/recall/F1 and the confusion matrix;
 * quadratic weighted kappa (the ordinal agreement the Kaggle/CrowdFlower relevance task scores);
 * and percentile-bootstrap 95 % intervals for each headline figure.
 * A prediction may be missing (the model gave no valid answer): it counts as wrong everywhere and
 * is reported in `unanswered`.
 */
import { GRADES, isRelevant, type Grade } from './types.ts';

export interface GradeScores {
  precision: number;
  recall: number;
  f1: number;
  support: number;
}

export interface ClassificationMetrics {
  count: number;
  acc2: number;
  acc4: number;
  macroF1: number;
  /** Quadratic weighted kappa over L1 < L2 < L3 < L4; null where it is undefined (see `quadraticWeightedKappa`). */
  qwk: number | null;
  unanswered: number;
  perGrade: Record<Grade, GradeScores>;
  /** confusion[gold][predicted]; unanswered predictions in the "none" column. */
  confusion: Record<Grade, Record<Grade | 'none', number>>;
}

function f1(precision: number, recall: number): number {
  return precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
}

export function classificationMetrics(pairs: readonly { gold: Grade; predicted: Grade | undefined }[]): ClassificationMetrics {
  const confusion = Object.fromEntries(
    GRADES.map((g) => [g, Object.fromEntries([...GRADES, 'none'].map((p) => [p, 0]))]),
  ) as ClassificationMetrics['confusion'];
  let exact = 0;
  let binary = 0;
  let unanswered = 0;
  for (const { gold, predicted } of pairs) {
    confusion[gold][predicted ?? 'none']++;
    if (predicted === undefined) {
      unanswered++;
      continue;
    }
    if (predicted === gold) exact++;
    if (isRelevant(predicted) === isRelevant(gold)) binary++;
  }
  const perGrade = Object.fromEntries(
    GRADES.map((grade) => {
      const truePositive = confusion[grade][grade];
      const predictedAs = GRADES.reduce((sum, gold) => sum + confusion[gold][grade], 0);
      const support = GRADES.reduce((sum, p) => sum + confusion[grade][p], 0) + confusion[grade].none;
      const precision = predictedAs === 0 ? 0 : truePositive / predictedAs;
      const recall = support === 0 ? 0 : truePositive / support;
      return [grade, { precision, recall, f1: f1(precision, recall), support }];
    }),
  ) as Record<Grade, GradeScores>;
  // Macro-F1 over the grades present in the gold labels: a grade the data never has would add a
  // meaningless 0 (sklearn's behaviour with labels=present ones).
  const present = GRADES.filter((g) => perGrade[g].support > 0);
  const count = pairs.length;
  return {
    count,
    acc2: count === 0 ? 0 : binary / count,
    acc4: count === 0 ? 0 : exact / count,
    macroF1: present.length === 0 ? 0 : present.reduce((sum, g) => sum + perGrade[g].f1, 0) / present.length,
    qwk: quadraticWeightedKappa(pairs),
    unanswered,
    perGrade,
    confusion,
  };
}

/**
 * Quadratic weighted kappa (Cohen 1968), with grades as ordinal indices i, j in 0..K-1:
 *   κ = 1 − Σ w_ij O_ij / Σ w_ij E_ij,   w_ij = (i − j)² / (K − 1)²,
 * O the observed gold × predicted counts and E = outer(gold histogram, predicted histogram) / n, the
 * counts expected if the two were independent. An unanswered prediction is scored as the grade
 * farthest from gold (L1 for L3–L4, L4 for L1–L2): missing answers count as wrong everywhere else,
 * and here as the worst ordinal error, so a model cannot gain by refusing. Null when the expected
 * disagreement is 0 (gold and predictions each a single, same grade): κ is 0/0 there.
 */
export function quadraticWeightedKappa(pairs: readonly { gold: Grade; predicted: Grade | undefined }[]): number | null {
  const k = GRADES.length;
  const index = (g: Grade): number => GRADES.indexOf(g);
  const observed = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  for (const { gold, predicted } of pairs) {
    const i = index(gold);
    const j = predicted === undefined ? (i >= k / 2 ? 0 : k - 1) : index(predicted);
    observed[i]![j]!++;
  }
  const n = pairs.length;
  const goldHist = observed.map((row) => row.reduce((a, b) => a + b, 0));
  const predHist = GRADES.map((_, j) => observed.reduce((sum, row) => sum + row[j]!, 0));
  let disagreement = 0;
  let expected = 0;
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const w = (i - j) ** 2 / (k - 1) ** 2;
      disagreement += w * observed[i]![j]!;
      expected += (w * goldHist[i]! * predHist[j]!) / n;
    }
  }
  return expected === 0 ? null : 1 - disagreement / expected;
}

/** A two-sided interval [low, high] for a figure. */
export type Interval = [number, number];

export interface MetricIntervals {
  acc2: Interval;
  acc4: Interval;
  macroF1: Interval;
  /** Null when κ is undefined in more than half the resamples. */
  qwk: Interval | null;
  /** Resamples drawn and the confidence level, so a reader can reproduce the interval. */
  resamples: number;
  level: number;
}

/** The arithmetic mean; 0 for no values (callers that must tell "none" apart check the length). */
export function mean(values: readonly number[]): number {
  return values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length;
}

/** Unbiased (n - 1) standard deviation, as torch.std; 0 for fewer than two values. */
export function std(values: readonly number[]): number {
  if (values.length < 2) return 0;
  const m = mean(values);
  return Math.sqrt(values.reduce((acc, v) => acc + (v - m) ** 2, 0) / (values.length - 1));
}

/** The empirical `q` quantile of sorted values, linearly interpolated (numpy's default). */
export function quantile(sorted: readonly number[], q: number): number {
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}

/**
 * Percentile bootstrap (Efron & Tibshirani 1993, ch. 13): resample the examples with replacement
 * `resamples` times, recompute each figure, and take the (1 − level)/2 and (1 + level)/2 quantiles.
 * Examples are the unit of resampling, so one interval per figure says how much the figure could
 * move on another sample of the same size. `random` returns uniforms in [0, 1) (a seeded stream,
 * so the interval is reproducible).
 */
export function bootstrapIntervals(
  pairs: readonly { gold: Grade; predicted: Grade | undefined }[],
  random: () => number,
  options: { resamples?: number; level?: number } = {},
): MetricIntervals {
  const resamples = options.resamples ?? 1000;
  const level = options.level ?? 0.95;
  const figures = { acc2: [] as number[], acc4: [] as number[], macroF1: [] as number[], qwk: [] as number[] };
  const n = pairs.length;
  if (n > 0) {
    for (let r = 0; r < resamples; r++) {
      const sample = Array.from({ length: n }, () => pairs[Math.floor(random() * n)]!);
      const m = classificationMetrics(sample);
      figures.acc2.push(m.acc2);
      figures.acc4.push(m.acc4);
      figures.macroF1.push(m.macroF1);
      if (m.qwk !== null) figures.qwk.push(m.qwk);
    }
  }
  const interval = (values: number[]): Interval => {
    if (values.length === 0) return [0, 0];
    const sorted = [...values].sort((a, b) => a - b);
    return [quantile(sorted, (1 - level) / 2), quantile(sorted, (1 + level) / 2)];
  };
  return {
    acc2: interval(figures.acc2),
    acc4: interval(figures.acc4),
    macroF1: interval(figures.macroF1),
    qwk: n > 0 && figures.qwk.length * 2 >= resamples ? interval(figures.qwk) : null,
    resamples,
    level,
  };
}

/** A judge answering one grade for at least this share of pairs is degenerate (unless gold is as skewed). */
export const DEGENERATE_GRADE_SHARE = 0.9;
/** A judge whose QWK is at most this agrees with the human grades no better than chance. */
export const DEGENERATE_QWK = 0.05;

export type GradeShares = Record<Grade | 'none', number>;

export interface Degeneracy {
  degenerate: boolean;
  /** Why, in words (empty when it is not degenerate). */
  reasons: string[];
  /** Share of pairs predicted as each grade ('none': unanswered). */
  predictedShares: GradeShares;
  goldShares: Record<Grade, number>;
  qwk: number | null;
}

function shares<K extends string>(keys: readonly K[], values: readonly K[]): Record<K, number> {
  const counts = Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;
  for (const v of values) counts[v]++;
  return Object.fromEntries(keys.map((k) => [k, values.length === 0 ? 0 : counts[k] / values.length])) as Record<K, number>;
}

/**
 * Whether a judge has collapsed: it answers one grade (or none) for >= DEGENERATE_GRADE_SHARE of the
 * pairs while gold's largest grade share is below that, or its QWK is <= DEGENERATE_QWK. A model
 * trained from scratch on small, skewed data can learn only the grade prior; its accuracy then
 * equals the majority share and looks respectable, so the check reads the prediction shares and
 * the ordinal agreement instead. An undefined QWK (gold and predictions one and the same grade) is
 * not a collapse: there is nothing to tell apart.
 */
export function judgeDegeneracy(pairs: readonly { gold: Grade; predicted: Grade | undefined }[]): Degeneracy {
  const predictedShares = shares<Grade | 'none'>([...GRADES, 'none'], pairs.map((p) => p.predicted ?? 'none'));
  const goldShares = shares(GRADES, pairs.map((p) => p.gold));
  const qwk = quadraticWeightedKappa(pairs);
  const reasons: string[] = [];
  if (pairs.length > 0) {
    const [top, topShare] = Object.entries(predictedShares).reduce((best, entry) => (entry[1] > best[1] ? entry : best));
    const goldTop = Math.max(...Object.values(goldShares));
    const percent = (x: number) => `${(x * 100).toFixed(1)} %`;
    if (topShare >= DEGENERATE_GRADE_SHARE && goldTop < DEGENERATE_GRADE_SHARE) {
      reasons.push(`answers ${top === 'none' ? 'nothing' : top} for ${percent(topShare)} of ${pairs.length} pairs while gold's largest grade share is ${percent(goldTop)}`);
    }
    if (qwk !== null && qwk <= DEGENERATE_QWK) reasons.push(`QWK ${qwk.toFixed(4)} <= ${DEGENERATE_QWK}`);
  }
  return { degenerate: reasons.length > 0, reasons, predictedShares, goldShares, qwk };
}

/** "L1 12.0 %, L4 88.0 %": the grades a judge predicts with their shares, for logs and quality checks. */
export function describeShares(shares: Readonly<Record<string, number>>): string {
  return Object.entries(shares)
    .filter(([, share]) => share > 0)
    .map(([grade, share]) => `${grade} ${(share * 100).toFixed(1)} %`)
    .join(', ');
}
