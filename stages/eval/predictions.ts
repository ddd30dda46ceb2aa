/**
 * One evaluated example of one model (a checkpoint, or the lexical baseline): what
 * `predictions.jsonl` holds, one line each, and what every figure in `metrics.json` is computed from.
 */
import { parseCompletion, verifyCompletion, type ReasoningSteps } from '../lib/relevance/completion.ts';
import { cumulativeGrade, ensembleGradeProbs, MEDIAN_THRESHOLD, pooledReading } from '../lib/relevance/grade-pooling.ts';
import type { Grade, RelevanceExample } from '../lib/relevance/types.ts';

export interface Prediction {
  /** The checkpoint's stage name, or "baseline". */
  model: string;
  id: string;
  gold: Grade;
  /** null: the model gave no valid grade (counted wrong, and as unanswered). */
  predicted: Grade | null;
  capabilities: string[];
  difficulty: string;
  source: string;
  /** The rules that fire for this pair (gold meta). */
  firingRules: string[];
  /** Completion-level figures; null for the baseline, which writes no completion. */
  formatOk: boolean | null;
  formatErrors: string[];
  stepsVerified: number | null;
  /** Whether the rules step names every firing rule; null when no rule fires or there is no completion. */
  rulesNamed: boolean | null;
  completion: string | null;
  completionTokens: number | null;
  /** Wall time of the example's batch divided by the batch's rows. */
  latencyMs: number;
  /**
   * p(grade) read from the answer tokens, renormalised over L1–L4: after the prompt (answer_first),
   * or after the reasoning (grade: median, or when eval pools with the lexical model); for a pooled
   * row, the pooled probabilities.
   */
  gradeProbs?: Record<Grade, number>;
  /** A checkpoint's written answer (null: none), whatever `predicted` was read from; absent for other rows. */
  answer?: Grade | null;
}

export type ExampleFields = Pick<Prediction, 'id' | 'gold' | 'capabilities' | 'difficulty' | 'source' | 'firingRules'>;

export function exampleFields(example: RelevanceExample): ExampleFields {
  return {
    id: example.id,
    gold: example.label,
    capabilities: [...example.meta.capabilities],
    difficulty: example.meta.difficulty,
    source: example.meta.source,
    firingRules: [...example.meta.rules],
  };
}

/**
 * Scores a generated completion against the example and its reference steps. `grade.probs`, when
 * given, are kept; `grade.predicted`, when given, overrides the parsed answer (answer_first and
 * grade: median read the grade from the answer tokens' probabilities).
 */
export function scoreCompletion(
  model: string,
  example: RelevanceExample,
  reference: ReasoningSteps,
  completion: { text: string; tokens: number; latencyMs: number },
  grade?: { predicted?: Grade; probs: Record<Grade, number> },
): Prediction {
  const parsed = parseCompletion(completion.text);
  const verification = verifyCompletion(parsed, reference, example.label);
  const firing = example.meta.rules;
  const named = new Set(parsed.steps.rules ?? []);
  return {
    model,
    ...exampleFields(example),
    predicted: grade?.predicted ?? parsed.label ?? null,
    formatOk: parsed.formatOk,
    formatErrors: parsed.errors,
    stepsVerified: verification.stepsVerified,
    rulesNamed: firing.length === 0 ? null : firing.every((rule) => named.has(rule)),
    completion: completion.text,
    completionTokens: completion.tokens,
    latencyMs: completion.latencyMs,
    ...(grade ? { gradeProbs: grade.probs } : {}),
    answer: parsed.label ?? null,
  };
}

/** A prompt the model cannot read (longer than its context): an unanswered, invalid prediction. */
export function unreadablePrediction(model: string, example: RelevanceExample): Prediction {
  return {
    model,
    ...exampleFields(example),
    predicted: null,
    formatOk: false,
    formatErrors: ['prompt_too_long'],
    stepsVerified: 0,
    rulesNamed: example.meta.rules.length === 0 ? null : false,
    completion: null,
    completionTokens: 0,
    latencyMs: 0,
  };
}

/**
 * A checkpoint's prediction pooled with the learned lexical model's grade probabilities (eval's
 * `lexical_pool`): the median grade of their logarithmic pool (stages/lib/relevance/grade-pooling.ts). The completion-level
 * figures are the checkpoint's (the same completion); the text is not repeated. A prediction without
 * grade probabilities (its prompt or its answer did not fit the context) stays unanswered.
 */
export function pooledPrediction(model: string, judged: Prediction, lexical: Record<Grade, number>, weight: number, lexicalMs: number): Prediction {
  const pooled = judged.gradeProbs ? pooledReading(judged.gradeProbs, lexical, weight) : undefined;
  // Not the checkpoint's written answer: this row's grade is the pool's.
  const { answer: _written, ...fields } = judged;
  return {
    ...fields,
    model,
    predicted: pooled?.grade ?? null,
    completion: null,
    latencyMs: judged.latencyMs + lexicalMs,
    ...(pooled ? { gradeProbs: pooled.probs } : {}),
  };
}

/**
 * One example's prediction by an ensemble of checkpoints (eval's `ensemble`): the median grade of the
 * equal-weight logarithmic pool of the members' grade probabilities (ensembleGradeProbs), over the
 * members that have them; unanswered when none does. An ensemble writes no completion of its own, so
 * it has no completion-level figures, and its latency is its members' summed (they run one after
 * another).
 */
export function ensemblePrediction(model: string, members: readonly Prediction[]): Prediction {
  const first = members[0];
  if (!first) throw new RangeError('ensemblePrediction: no members');
  const read = members.flatMap((m) => (m.gradeProbs ? [m.gradeProbs] : []));
  const probs = read.length > 0 ? ensembleGradeProbs(read) : undefined;
  const { id, gold, capabilities, difficulty, source, firingRules } = first;
  return completionlessPrediction(
    model,
    { id, gold, capabilities, difficulty, source, firingRules },
    probs ? cumulativeGrade(probs, MEDIAN_THRESHOLD) : null,
    members.reduce((sum, m) => sum + m.latencyMs, 0),
    probs,
  );
}

/**
 * A row judged from other rows' grade probabilities (an ensemble, the delivered judge): it writes no
 * completion, so it has no completion-level figures.
 */
export function completionlessPrediction(
  model: string,
  fields: ExampleFields,
  predicted: Grade | null,
  latencyMs: number,
  gradeProbs: Record<Grade, number> | undefined,
): Prediction {
  return {
    model,
    ...fields,
    predicted,
    formatOk: null,
    formatErrors: [],
    stepsVerified: null,
    rulesNamed: null,
    completion: null,
    completionTokens: null,
    latencyMs,
    ...(gradeProbs ? { gradeProbs } : {}),
  };
}
