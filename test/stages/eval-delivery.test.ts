// The delivered judge: the degeneracy check, and the choice of judge, pool weight and decision rule
// by cross-fitting on dev query folds (stages/eval/delivery.ts).
import { describe, expect, it } from 'vitest';
import { chooseDelivered, judgePredictions, queryFolds, type JudgeInputs } from '../../stages/eval/delivery.ts';
import type { Prediction } from '../../stages/eval/predictions.ts';
import { classificationMetrics, judgeDegeneracy } from '../../stages/lib/relevance/grade-agreement.ts';
import { fitCutPoints, gradeFor } from '../../stages/lib/relevance/baseline.ts';
import { GRADES, type Grade, type RelevanceExample } from '../../stages/lib/relevance/types.ts';

const identity = <T>(items: T[]): T[] => items;

/** 40 pairs over 20 queries, 10 of each grade. */
const golds: Grade[] = Array.from({ length: 40 }, (_, i) => GRADES[i % 4] as Grade);
const examples = golds.map(
  (label, i): RelevanceExample =>
    ({ id: `e${i}`, query: `q${Math.floor(i / 2)}`, item: { title: 't', category: [], attributes: {} }, label, meta: { capabilities: [], difficulty: 'easy', source: 's', rules: [] } }) as unknown as RelevanceExample,
);

/** A distribution with most of its mass on `grade`. */
function peaked(grade: Grade, mass = 0.7): Record<Grade, number> {
  return Object.fromEntries(GRADES.map((g) => [g, g === grade ? mass : (1 - mass) / 3])) as Record<Grade, number>;
}
function rows(model: string, probs: (i: number) => Record<Grade, number>): Prediction[] {
  return examples.map((e, i) => ({ model, id: e.id, gold: e.label, predicted: null, capabilities: [], difficulty: 'easy', source: 's', firingRules: [], formatOk: true, formatErrors: [], stepsVerified: 0, rulesNamed: null, completion: '', completionTokens: 1, latencyMs: 1, gradeProbs: probs(i) }));
}
const uniform = (): Record<Grade, number> => ({ L1: 0.25, L2: 0.25, L3: 0.25, L4: 0.25 });

describe('judgeDegeneracy', () => {
  it('flags a constant judge on balanced gold (share and QWK), not a perfect one', () => {
    const constant = judgeDegeneracy(golds.map((gold) => ({ gold, predicted: 'L4' as Grade })));
    expect(constant.degenerate).toBe(true);
    expect(constant.predictedShares).toEqual({ L1: 0, L2: 0, L3: 0, L4: 1, none: 0 });
    expect(constant.goldShares).toEqual({ L1: 0.25, L2: 0.25, L3: 0.25, L4: 0.25 });
    // A constant prediction's observed disagreement equals the chance one: κ = 0.
    expect(constant.qwk).toBeCloseTo(0, 12);
    expect(constant.reasons).toEqual(["answers L4 for 100.0 % of 40 pairs while gold's largest grade share is 25.0 %", 'QWK 0.0000 <= 0.05']);
    const perfect = judgeDegeneracy(golds.map((gold) => ({ gold, predicted: gold })));
    expect(perfect).toMatchObject({ degenerate: false, reasons: [], qwk: 1 });
  });

  it('does not flag a majority answer when gold is just as skewed, but flags QWK at chance', () => {
    // 19 of 20 gold L4, all predicted L4 but one right L1: share rule silent, κ = 1.
    const skewed = Array.from({ length: 20 }, (_, i) => ({ gold: (i === 0 ? 'L1' : 'L4') as Grade, predicted: (i === 0 ? 'L1' : 'L4') as Grade }));
    expect(judgeDegeneracy(skewed).degenerate).toBe(false);
    // Predicting L4 for all: κ = 0 (a constant), so flagged by QWK alone.
    const constant = judgeDegeneracy(skewed.map((p) => ({ ...p, predicted: 'L4' as Grade })));
    expect(constant.reasons).toEqual(['QWK 0.0000 <= 0.05']);
  });
});

describe('queryFolds', () => {
  it('keeps every query in one fold and deals queries round-robin', () => {
    const folds = queryFolds(examples.map((e) => e.query), 5, identity);
    // Sorted queries q0, q1, q10, q11, ...: q0 -> 0, q1 -> 1, q10 -> 2, q11 -> 3, q12 -> 4, q13 -> 0.
    expect([folds[0], folds[2], folds[20], folds[22], folds[24], folds[26]]).toEqual([0, 1, 2, 3, 4, 0]);
    for (let i = 0; i < examples.length; i += 2) expect(folds[i + 1]).toBe(folds[i]);
  });
});

describe('chooseDelivered', () => {
  const lexicalUniform = examples.map(uniform);

  it('delivers the checkpoint that holds up on dev, not the later stage that collapsed', () => {
    const inputs: JudgeInputs = {
      examples,
      checkpoints: new Map([
        ['sft', rows('sft', (i) => peaked(golds[i] as Grade))],
        ['rl', rows('rl', () => peaked('L4'))],
      ]),
      lexical: lexicalUniform,
    };
    const { delivered, predictions } = chooseDelivered('delivered', inputs, [], identity);
    // sft read at its median is exactly gold: macro-F1 1 and QWK 1, the first candidate to reach it.
    expect(delivered.definition).toEqual({ members: ['sft'], memberWeights: [1], lexicalWeight: 0, rule: 'median' });
    expect(delivered.crossFitted).toMatchObject({ macroF1: 1, qwk: 1, acc4: 1, degenerate: false });
    expect(delivered.folds).toMatchObject({ count: 5, examples: [8, 8, 8, 8, 8] });
    expect(predictions.map((p) => p.predicted)).toEqual(golds);
  });

  it('delivers the lexical model alone when every checkpoint is constant', () => {
    const inputs: JudgeInputs = {
      examples,
      checkpoints: new Map([['sft', rows('sft', () => peaked('L4', 0.97))]]),
      lexical: examples.map((e) => peaked(e.label, 0.4)),
    };
    const { delivered } = chooseDelivered('delivered', inputs, [], identity);
    // The lexical model's median is off (0.4 on gold, 0.2 elsewhere: the median of a gold L1 is L2),
    // but its expected grade rises with gold, so its cut points are exact.
    expect(delivered.definition).toMatchObject({ members: [], lexicalWeight: 1, rule: 'cut-points' });
    expect(delivered.crossFitted.macroF1).toBe(1);
  });

  it("reads a judge that leans on one grade at cut points on its expected grade, fitted on the other folds", () => {
    // The median is L4 everywhere (a collapse), but the expected grade orders the pairs by gold:
    // E = 1·p1 + 2·p2 + 3·p3 + 4·p4 rises with gold in four separate bands.
    const leaning = (grade: Grade): Record<Grade, number> => {
      const k = GRADES.indexOf(grade);
      return { L1: 0.2 - 0.04 * k, L2: 0.1, L3: 0.1, L4: 0.6 + 0.04 * k };
    };
    const inputs: JudgeInputs = { examples, checkpoints: new Map([['sft', rows('sft', (i) => leaning(golds[i] as Grade))]]), lexical: lexicalUniform };
    const { delivered, predictions } = chooseDelivered('delivered', inputs, [], identity);
    expect(delivered.definition.rule).toBe('cut-points');
    expect(delivered.definition.members).toEqual(['sft']);
    // Every fold holds all four bands, so cut points fitted without it separate it exactly.
    expect(delivered.crossFitted).toMatchObject({ macroF1: 1, qwk: 1 });
    expect(predictions.map((p) => p.predicted)).toEqual(golds);
    // Cut points fitted on all of dev, applied to fresh pairs, grade them by band.
    const [t1, t2, t3] = delivered.definition.cutPoints as [number, number, number];
    const expected = (g: Grade) => 1 * leaning(g).L1 + 2 * leaning(g).L2 + 3 * leaning(g).L3 + 4 * leaning(g).L4;
    expect(expected('L1') < t1 && t1 <= expected('L2') && expected('L2') < t2 && t2 <= expected('L3') && expected('L3') < t3 && t3 <= expected('L4')).toBe(true);
    const applied = judgePredictions('delivered', delivered.definition, inputs);
    expect(applied.map((p) => p.predicted)).toEqual(golds);
  });

  it('tries the ensemble subsets: two members that each see half the grades judge as one', () => {
    // a knows L1/L2 apart, b knows L3/L4 apart; their geometric mean's expected grade orders all
    // four (each alone gives two grades the same probabilities, so no cut points separate them).
    const a = (g: Grade) => (g === 'L1' || g === 'L2' ? peaked(g, 0.5) : { L1: 0.1, L2: 0.1, L3: 0.4, L4: 0.4 });
    const b = (g: Grade) => (g === 'L3' || g === 'L4' ? peaked(g, 0.5) : { L1: 0.4, L2: 0.4, L3: 0.1, L4: 0.1 });
    const inputs: JudgeInputs = {
      examples,
      checkpoints: new Map([
        ['a', rows('a', (i) => a(golds[i] as Grade))],
        ['b', rows('b', (i) => b(golds[i] as Grade))],
      ]),
      lexical: lexicalUniform,
    };
    const { delivered } = chooseDelivered('delivered', inputs, ['a', 'b'], identity);
    expect(delivered.definition).toMatchObject({ members: ['a', 'b'], memberWeights: [0.5, 0.5], lexicalWeight: 0, rule: 'cut-points' });
    expect(delivered.crossFitted.macroF1).toBe(1);
  });
});

describe('fitCutPoints', () => {
  it('finds the cut points an exhaustive re-grading search finds (the lexical baseline\'s former search)', () => {
    const candidatePoints = (scores: number[]) => {
      const distinct = [...new Set(scores)].sort((a, b) => a - b);
      const points = [-Infinity, ...distinct.slice(1).map((s, i) => (s + distinct[i]!) / 2), Infinity];
      return points.length <= 24 ? points : Array.from({ length: 24 }, (_, i) => points[Math.round((i * (points.length - 1)) / 23)]!);
    };
    let seed = 7;
    const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    for (let trial = 0; trial < 12; trial++) {
      const scored = Array.from({ length: 20 + Math.floor(random() * 120) }, () => {
        const g = Math.floor(random() * 4);
        // Every fourth trial has no L4, so macro-F1 runs over the grades gold has.
        return { score: Math.round((g + random() * 3) * 10) / 10, gold: GRADES[trial % 4 === 0 ? Math.min(g, 2) : g]! };
      });
      const points = candidatePoints(scored.map((e) => e.score));
      let best = { thresholds: [0.25, 0.5, 0.75], macroF1: -1 };
      for (let a = 0; a < points.length; a++)
        for (let b = a; b < points.length; b++)
          for (let c = b; c < points.length; c++) {
            const thresholds = [points[a]!, points[b]!, points[c]!];
            const { macroF1 } = classificationMetrics(scored.map((e) => ({ gold: e.gold, predicted: gradeFor(e.score, thresholds) })));
            if (macroF1 > best.macroF1) best = { thresholds, macroF1 };
          }
      expect(fitCutPoints(scored)).toEqual(best);
    }
  });
});
