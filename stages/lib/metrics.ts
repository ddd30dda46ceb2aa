/**
 * Relevance metrics as LORE / TaoSR report them: Acc@2 (binary: L3–L4 against L1–L2), Acc@4 (exact
 * grade), macro-F1 over the four grades, per-grade precision/recall/F1 and the confusion matrix.
 * A prediction may be missing (the model gave no valid answer): it counts as wrong everywhere and
 * is reported in `unanswered`.
 */
import { GRADES, isRelevant, type Grade } from './relevance/types.ts';

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
    unanswered,
    perGrade,
    confusion,
  };
}
