/**
 * The eval's figures on hand-built predictions, with expected values derived in comments: metrics,
 * slices, completion-level rates, the cumulative-probability partition and its tuning, pooling with
 * the lexical model, and the scoring of a completion against its reference steps.
 */
import { describe, expect, it } from 'vitest';
import { pooledPrediction, scoreCompletion, unreadablePrediction, type Prediction } from '../../stages/eval/predictions.ts';
import { cumulativeGrade, normaliseGradeProbs, poolGradeProbs, tuneCumulativeThreshold } from '../../stages/lib/relevance/grade-pooling.ts';
import { comparisonRow, summarise } from '../../stages/eval/summary.ts';
import { renderCompletion, type ReasoningSteps } from '../../stages/lib/relevance/completion.ts';
import type { Grade, RelevanceExample } from '../../stages/lib/relevance/types.ts';
import { Rng } from '../../pipeline/rng.ts';

function prediction(fields: Partial<Prediction> & Pick<Prediction, 'gold' | 'predicted'>): Prediction {
  return {
    model: 'sft',
    id: 'x',
    capabilities: [],
    difficulty: 'easy',
    source: 'world',
    firingRules: [],
    formatOk: true,
    formatErrors: [],
    stepsVerified: 5,
    rulesNamed: null,
    completion: '',
    completionTokens: 0,
    latencyMs: 0,
    ...fields,
  };
}

const FOUR = [
  prediction({ gold: 'L4', predicted: 'L4', capabilities: ['knowledge'], difficulty: 'easy', stepsVerified: 5, completionTokens: 40, latencyMs: 10 }),
  prediction({ gold: 'L2', predicted: 'L3', capabilities: ['rule', 'reasoning'], difficulty: 'hard', stepsVerified: 3, firingRules: ['R-GENDER'], rulesNamed: false, completionTokens: 50, latencyMs: 20 }),
  prediction({ gold: 'L1', predicted: 'L1', capabilities: ['rule'], difficulty: 'medium', source: 'chorus', formatOk: false, stepsVerified: 4, firingRules: ['R-X'], rulesNamed: true, completionTokens: 30, latencyMs: 30 }),
  prediction({ gold: 'L3', predicted: null, capabilities: ['visual'], difficulty: 'easy', source: 'chorus', formatOk: false, stepsVerified: 0, completionTokens: 60, latencyMs: 40 }),
];

describe('summarise', () => {
  const bootstrap = new Rng(1, 'bootstrap');
  const s = summarise(FOUR, () => bootstrap.next());

  it('computes the classification metrics, counting a missing grade as wrong', () => {
    // Exact: #1 and #3 -> 2/4. Binary: #1 (rel/rel) and #3 (irr/irr) right; #2 L2->L3 crosses; #4 unanswered.
    expect(s.acc4).toBe(0.5);
    expect(s.acc2).toBe(0.5);
    expect(s.unanswered).toBe(1);
    expect(s.confusion.L3.none).toBe(1);
    expect(s.confusion.L2.L3).toBe(1);
  });

  it('computes the completion-level rates', () => {
    // formatOk: #1, #2 of 4. Steps: (5+3+4+0)/(4*5) = 12/20.
    expect(s.formatValidity).toBe(0.5);
    expect(s.stepVerificationRate).toBeCloseTo(0.6, 12);
    // Rules fire in #2 (not named) and #3 (named): 1 of 2.
    expect(s.ruleAdherence).toBe(0.5);
    expect(s.ruleExamples).toBe(2);
    expect(s.meanCompletionTokens).toBe(45); // (40+50+30+60)/4
    expect(s.meanLatencyMs).toBe(25); // (10+20+30+40)/4
  });

  it('slices by capability (an example in every slice it is tagged with), difficulty and source', () => {
    expect(s.slices.capability.rule).toMatchObject({ count: 2, acc4: 0.5 }); // #2 wrong, #3 right
    expect(s.slices.capability.reasoning).toMatchObject({ count: 1, acc4: 0 });
    expect(s.slices.capability.knowledge).toMatchObject({ count: 1, acc4: 1 });
    expect(s.slices.capability.visual).toMatchObject({ count: 1, acc4: 0 });
    expect(s.slices.difficulty.easy).toMatchObject({ count: 2, acc4: 0.5, acc2: 0.5 }); // #1 right, #4 unanswered
    expect(s.slices.source.chorus).toMatchObject({ count: 2, acc4: 0.5 }); // #3 right, #4 unanswered
    expect(s.slices.source.world).toMatchObject({ count: 2, acc4: 0.5 });
  });

  it('gives null rates, not zeros, for a model without completions (the baseline)', () => {
    const baseline = summarise(FOUR.map((p) => ({ ...p, formatOk: null, stepsVerified: null, rulesNamed: null, completion: null, completionTokens: null })), () => 0);
    expect(baseline.formatValidity).toBeNull();
    expect(baseline.stepVerificationRate).toBeNull();
    expect(baseline.ruleAdherence).toBeNull();
    expect(baseline.meanCompletionTokens).toBeNull();
    expect(comparisonRow('baseline', 'baseline', baseline)).toMatchObject({ model: 'baseline', kind: 'baseline', acc4: 0.5, formatValidity: null });
  });

  it('flags every model that answers one grade, not only the delivered judge', () => {
    // Gold L4/L2/L1/L3: no grade holds 90 %. A model that answers L1 for all four holds 100 % on one grade.
    const constant = summarise(FOUR.map((p) => ({ ...p, predicted: 'L1' as const })), () => 0);
    expect(constant.degeneracy.degenerate).toBe(true);
    expect(comparisonRow('sft', 'checkpoint', constant).degenerate).toBe(true);
    // FOUR's own predictions: L4, L3, L1, none (25 % each); QWK over the 3 answered pairs
    // (L4/L4, L2/L3, L1/L1) is well above 0.05, so it is not degenerate.
    expect(s.degeneracy.degenerate).toBe(false);
    expect(comparisonRow('sft', 'checkpoint', s).degenerate).toBe(false);
  });
});

describe('cumulative-probability partition (TaoSR1)', () => {
  const probs: Record<Grade, number> = { L1: 0.1, L2: 0.2, L3: 0.3, L4: 0.4 };

  it('predicts the first grade from the top whose cumulative probability reaches the threshold', () => {
    // Cumulative from L4 down: 0.4, 0.7, 0.9, 1.0.
    expect(cumulativeGrade(probs, 0.4)).toBe('L4');
    expect(cumulativeGrade(probs, 0.5)).toBe('L3');
    expect(cumulativeGrade(probs, 0.8)).toBe('L2');
    expect(cumulativeGrade(probs, 0.95)).toBe('L1');
  });

  it('renormalises answer log-probabilities over the four grades', () => {
    // exp(ln k - 3) for k = 1, 1, 2, 4, over their sum 8.
    const p = normaliseGradeProbs({ L1: Math.log(1) - 3, L2: Math.log(1) - 3, L3: Math.log(2) - 3, L4: Math.log(4) - 3 });
    expect(p.L1).toBeCloseTo(1 / 8, 12);
    expect(p.L3).toBeCloseTo(2 / 8, 12);
    expect(p.L4).toBeCloseTo(4 / 8, 12);
  });

  it('tunes the smallest threshold with the best dev macro-F1', () => {
    // A (gold L4): cumulative 0.6, 0.9, ...; B (gold L3): 0.45, 0.9, ...
    // τ <= 0.45 -> both L4: F1(L4) = 2/3, F1(L3) = 0, macro 1/3. τ in (0.45, 0.6] -> A L4, B L3: macro 1.
    // τ in (0.6, 0.9] -> both L3: macro 1/3. The smallest candidate reaching 1 is 0.6.
    const dev = [
      { gold: 'L4' as Grade, probs: { L4: 0.6, L3: 0.3, L2: 0.05, L1: 0.05 } },
      { gold: 'L3' as Grade, probs: { L4: 0.45, L3: 0.45, L2: 0.05, L1: 0.05 } },
    ];
    expect(tuneCumulativeThreshold(dev)).toEqual({ threshold: 0.6, macroF1: 1 });
    expect(() => tuneCumulativeThreshold([])).toThrow(/no dev examples/);
  });
});

describe('scoreCompletion', () => {
  const reference: ReasoningSteps = {
    query: { product: 'hiking boots', constraints: { gender: 'men' }, intent: '' },
    item: { product: 'hiking boots', category: ['Shoes', 'Outdoor', 'Hiking Boots'], attributes: { gender: 'women' } },
    category: { relation: 'match', path: 'hiking boots is-a boots' },
    attributes: { gender: 'conflict' },
    rules: ['R-GENDER'],
  };
  const example: RelevanceExample = {
    id: 'q1-i1',
    query: 'hiking boots men',
    item: { title: "women's hiking boots", category: ['Shoes', 'Outdoor', 'Hiking Boots'], attributes: { gender: 'women' } },
    label: 'L2',
    meta: { capabilities: ['rule'], difficulty: 'hard', rules: ['R-GENDER'], source: 'world' },
  };

  it('verifies every step and credits the named firing rule', () => {
    const p = scoreCompletion('sft', example, reference, { text: renderCompletion(reference, 'L2'), tokens: 30, latencyMs: 5 });
    expect(p).toMatchObject({ predicted: 'L2', formatOk: true, stepsVerified: 5, rulesNamed: true, completionTokens: 30, capabilities: ['rule'] });
  });

  it('counts a rules step that leaves out the firing rule, and lets the answer-token grade override the text', () => {
    const text = renderCompletion({ ...reference, rules: [] }, 'L2');
    const probs = { L1: 0.1, L2: 0.2, L3: 0.3, L4: 0.4 };
    const p = scoreCompletion('dpo', example, reference, { text, tokens: 30, latencyMs: 5 }, { predicted: 'L4', probs });
    // Four of five steps verify (rules differs); the grade is the one read from the probabilities.
    expect(p).toMatchObject({ model: 'dpo', predicted: 'L4', stepsVerified: 4, rulesNamed: false, gradeProbs: probs });
  });

  it('marks an unreadable prompt as unanswered and invalid, not dropped', () => {
    expect(unreadablePrediction('sft', example)).toMatchObject({ predicted: null, formatOk: false, formatErrors: ['prompt_too_long'], rulesNamed: false });
  });
});

describe('pooling with the lexical model (logarithmic opinion pool)', () => {
  // Powers of two, so the pool is exact: at weight 1/4 on the lexical model,
  // p(g) ∝ judge(g)^(3/4) · lexical(g)^(1/4):
  //   L1: 2^-1^(3/4) · 2^-3^(1/4) = 2^-1.5,  L2: 2^-2·3/4 · 2^-3/4 = 2^-2.25,
  //   L3: 2^-3·3/4 · 2^-2/4 = 2^-2.75,       L4: 2^-3·3/4 · 2^-1/4 = 2^-2.5.
  const judge: Record<Grade, number> = { L1: 0.5, L2: 0.25, L3: 0.125, L4: 0.125 };
  const lexical: Record<Grade, number> = { L1: 0.125, L2: 0.125, L3: 0.25, L4: 0.5 };
  const raw = { L1: 2 ** -1.5, L2: 2 ** -2.25, L3: 2 ** -2.75, L4: 2 ** -2.5 };
  const total = raw.L1 + raw.L2 + raw.L3 + raw.L4;

  it('is the weighted geometric mean of the two distributions, renormalised', () => {
    const pooled = poolGradeProbs(judge, lexical, 0.25);
    for (const g of ['L1', 'L2', 'L3', 'L4'] as const) expect(pooled[g]).toBeCloseTo(raw[g] / total, 12);
  });

  it('gives each model alone at weights 0 and 1, and keeps a grade one model rules out at zero', () => {
    expect(poolGradeProbs(judge, lexical, 0)).toEqual(judge);
    expect(poolGradeProbs(judge, lexical, 1)).toEqual(lexical);
    const sure = poolGradeProbs({ L1: 0, L2: 0, L3: 0.5, L4: 0.5 }, lexical, 0.5);
    expect([sure.L1, sure.L2]).toEqual([0, 0]);
    // L3 and L4 in the ratio sqrt(0.5·0.25) : sqrt(0.5·0.5) = 1 : sqrt(2).
    expect(sure.L4 / sure.L3).toBeCloseTo(Math.SQRT2, 12);
    expect(() => poolGradeProbs(judge, lexical, 1.5)).toThrow(/weight/);
  });

  it('reads a pooled prediction at its median, keeps the completion figures, and leaves an unreadable one unanswered', () => {
    // Pooled, from L4 down: 0.199, 0.366, 0.602 reaches 1/2 at L2 (the judge alone: L2; the lexical model alone: L4).
    const judged = prediction({ gold: 'L2', predicted: 'L1', gradeProbs: judge, stepsVerified: 3, completion: 'text', completionTokens: 7, latencyMs: 10 });
    const pooled = pooledPrediction('sft+lexical', judged, lexical, 0.25, 0.5);
    expect(pooled).toMatchObject({ model: 'sft+lexical', predicted: 'L2', stepsVerified: 3, completionTokens: 7, completion: null, latencyMs: 10.5 });
    expect(pooled.gradeProbs?.L4).toBeCloseTo(raw.L4 / total, 12);
    const unreadable = pooledPrediction('sft+lexical', prediction({ gold: 'L2', predicted: null }), lexical, 0.25, 0);
    expect(unreadable.predicted).toBeNull();
  });
});
