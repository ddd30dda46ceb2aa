// The delivered judge: the degeneracy check, the choice of judge, pool weight and decision rule by
// cross-fitting on balanced dev query folds with the one-SE rule, and the nested estimate of that
// choice (stages/eval/delivery.ts, stages/eval/delivery-folds.ts).
import { describe, expect, it } from 'vitest';
import { chooseDelivered, EXHAUSTIVE_SELECTION, judgePredictions, nestedSelection, SELECTION, type JudgeInputs, type SelectionSettings } from '../../stages/eval/delivery.ts';
import { balancedQueryFolds } from '../../stages/eval/delivery-folds.ts';
import type { Prediction } from '../../stages/eval/predictions.ts';
import { bootstrapIntervals, classificationMetrics, judgeDegeneracy } from '../../stages/lib/relevance/grade-agreement.ts';
import { fitCutPoints, gradeFor } from '../../stages/lib/relevance/baseline.ts';
import { GRADES, type Grade, type RelevanceExample } from '../../stages/lib/relevance/types.ts';

/** A seeded uniform stream (Park–Miller), so folds and resamples are reproducible. */
function stream(seed: number): () => number {
  let state = seed;
  return () => (state = (state * 16807) % 2147483647) / 2147483647;
}
/** The shipped settings without pooling: for tests of what is not about the lexical weight. */
const unpooled: SelectionSettings = { ...SELECTION, lexicalWeights: [0] };

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

describe('balancedQueryFolds', () => {
  const pairsOf = (sizes: readonly number[], grade: (q: number) => Grade) => sizes.flatMap((n, q) => Array.from({ length: n }, () => ({ query: `q${q}`, label: grade(q) })));
  const foldSizes = (folds: number[], count: number) => Array.from({ length: count }, (_, f) => folds.filter((x) => x === f).length);

  it('keeps each query in one fold and balances pair counts that round-robin dealing leaves uneven', () => {
    // 200 pairs, target 40 a fold. Largest first: 40, 30, 30, 20, 20 open the five folds; the 10s
    // fill the 20s to 30 then the 30s to 40 (each where it cuts the squared excess most), the 5s
    // the last fold: 40 each, whatever order ties are taken in.
    const examples = pairsOf([40, 30, 30, 20, 20, 10, 10, 10, 10, 10, 5, 5], () => 'L1');
    for (const seed of [1, 2, 3]) {
      const folds = balancedQueryFolds(examples, 5, stream(seed));
      expect(foldSizes(folds, 5)).toEqual([40, 40, 40, 40, 40]);
      examples.forEach((e, i) => expect(folds[i]).toBe(folds[examples.findIndex((x) => x.query === e.query)]));
    }
  });

  it('stratifies by grade: one-grade queries are spread so each fold holds its share of each grade', () => {
    // 4 queries all L1 and 4 all L4, 10 pairs each, 2 folds: each fold 20 L1 and 20 L4 pairs.
    const examples = pairsOf(Array.from({ length: 8 }, () => 10), (q) => (q % 2 === 0 ? 'L1' : 'L4'));
    for (const seed of [1, 2, 3, 4]) {
      const folds = balancedQueryFolds(examples, 2, stream(seed));
      for (const f of [0, 1]) for (const g of ['L1', 'L4']) expect(examples.filter((e, i) => folds[i] === f && e.label === g).length).toBe(20);
    }
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
    const { delivered, predictions } = chooseDelivered('delivered', inputs, [], stream(1), unpooled);
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
    const { delivered } = chooseDelivered('delivered', inputs, [], stream(1));
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
    const { delivered, predictions } = chooseDelivered('delivered', inputs, [], stream(1), unpooled);
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

  it('tries the whole ensemble: two members that each see half the grades judge as one', () => {
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
    const { delivered } = chooseDelivered('delivered', inputs, ['a', 'b'], stream(1), unpooled);
    expect(delivered.definition).toMatchObject({ members: ['a', 'b'], memberWeights: [0.5, 0.5], lexicalWeight: 0, rule: 'cut-points' });
    expect(delivered.crossFitted.macroF1).toBe(1);
  });
});

describe('the one-standard-error rule', () => {
  // sft is right on 36 of 40 pairs, the lexical model on 35: wrong on sft's four and one more, where
  // either errs it answers the next grade up (L4 down). Both read at the median give exactly those
  // answers. A wrong pair's probabilities are those of a right pair of the grade answered, so no
  // reading (pooled, cut points) tells sft's four apart: sft's objective is the best there is.
  const off = (g: Grade): Grade => (g === 'L4' ? 'L3' : (GRADES[GRADES.indexOf(g) + 1] as Grade));
  const lexicalWrong = new Set([2, 7, 12, 17, 20]);
  const sftWrong = new Set([2, 7, 12, 17]);
  const lexicalAnswer = golds.map((g, i) => (lexicalWrong.has(i) ? off(g) : g));
  const sftAnswer = golds.map((g, i) => (sftWrong.has(i) ? off(g) : g));
  const inputs: JudgeInputs = { examples, checkpoints: new Map([['sft', rows('sft', (i) => peaked(sftAnswer[i] as Grade))]]), lexical: lexicalAnswer.map((g) => peaked(g)) };
  // Pool weights fixed here (not the shipped grid), so the candidates below are known.
  const coarse = (seMultiple: number): SelectionSettings => ({ lexicalWeights: [0, 0.25, 0.5, 0.75], ensembles: 'whole', seMultiple });
  const objective = (answers: Grade[]) => {
    const m = classificationMetrics(golds.map((gold, i) => ({ gold, predicted: answers[i] })));
    return (m.macroF1 + (m.qwk ?? 0)) / 2;
  };

  it('without it (0 SE) delivers the best candidate; with 1 SE the simpler lexical model within reach of it', () => {
    const best = chooseDelivered('delivered', inputs, [], stream(3), coarse(0)).delivered;
    // Pooled at weight 0.75 the pair they disagree on is still the lexical model's; at 0.5 it has
    // equal mass on both answers, 0.1^.5·0.7^.5 = 0.26 each, and the median reads the lower, the
    // lexical model's (off(g) is the higher but for L4); at 0.25 the mass on sft's answer is
    // 0.1^.25·0.7^.75 / (that + 0.7^.25·0.1^.75 + 2·0.1) = 0.54: sft's answers, the first candidate
    // to reach sft's objective (higher weights first).
    expect(best.crossFitted.objective).toBeCloseTo(objective(sftAnswer), 12);
    expect(best.definition.members).toEqual(['sft']);
    expect(best.definition.lexicalWeight).toBeLessThan(1);
    expect(best.crossFitted.objective).toBe(best.oneSe.bestObjective);
    expect(best.oneSe.floor).toBe(best.oneSe.bestObjective);

    const simple = chooseDelivered('delivered', inputs, [], stream(3), coarse(1)).delivered;
    // One pair apart on 40 is inside one standard error of the objective over 20 queries.
    const gap = simple.oneSe.bestObjective - objective(lexicalAnswer);
    expect(gap).toBeGreaterThan(0);
    expect(simple.oneSe.standardError).toBeGreaterThan(gap);
    expect(simple.oneSe.bestObjective).toBe(best.oneSe.bestObjective);
    expect(simple.definition).toMatchObject({ members: [], lexicalWeight: 1, rule: 'median' });
    expect(simple.crossFitted.objective).toBeCloseTo(objective(lexicalAnswer), 12);
  });
});

describe('nestedSelection', () => {
  it('estimates the selection honestly where the cross-fitted figure of the chosen candidate is optimistic', () => {
    // 120 pairs over 60 queries, balanced gold; five checkpoints whose probabilities are noise,
    // independent of gold, and a lexical model that knows nothing (uniform: a constant, degenerate
    // judge). Among the ~190 candidates of the exhaustive procedure, the best cross-fitted one
    // agrees with gold by luck; rerun without each outer fold, the selection's choice meets the
    // held-out pairs at chance.
    const n = 120;
    const noisyGolds = Array.from({ length: n }, (_, i) => GRADES[i % 4] as Grade);
    const noisyExamples = noisyGolds.map((label, i) => ({ ...(examples[0] as RelevanceExample), id: `n${i}`, query: `q${Math.floor(i / 2)}`, label }));
    const random = stream(11);
    const noise = (): Record<Grade, number> => {
      const raw = GRADES.map(() => 0.05 + random());
      const total = raw.reduce((a, b) => a + b, 0);
      return Object.fromEntries(GRADES.map((g, k) => [g, (raw[k] as number) / total])) as Record<Grade, number>;
    };
    const noiseRows = (model: string) => noisyExamples.map((e) => ({ ...rows(model, uniform)[0]!, id: e.id, gold: e.label, gradeProbs: noise() }));
    const members = ['sft', 'dpo', 'rl', 'sft_2', 'sft_3'];
    const inputs: JudgeInputs = { examples: noisyExamples, checkpoints: new Map(members.map((m) => [m, noiseRows(m)])), lexical: noisyExamples.map(uniform) };
    const chosen = chooseDelivered('delivered', inputs, ['rl', 'sft_2', 'sft_3'], stream(5), EXHAUSTIVE_SELECTION).delivered;
    const { nested, predictions } = nestedSelection('nested', inputs, ['rl', 'sft_2', 'sft_3'], stream(5), EXHAUSTIVE_SELECTION);
    expect(nested.folds.examples.reduce((a, b) => a + b, 0)).toBe(n);
    expect(nested.chosen).toHaveLength(5);
    const pairs = predictions.map((p, i) => ({ gold: noisyGolds[i] as Grade, predicted: p.predicted ?? undefined }));
    const honest = classificationMetrics(pairs);
    // The winner of the search looks better than chance; the nested estimate of the search does not.
    expect(chosen.crossFitted.qwk as number).toBeGreaterThan(0.1);
    expect(honest.qwk as number).toBeLessThan((chosen.crossFitted.qwk as number) - 0.1);
    const interval = bootstrapIntervals(pairs, stream(9)).qwk as [number, number];
    expect(interval[0]).toBeLessThan(0);
    expect(interval[1]).toBeGreaterThan(0);
  });

  it('agrees with the cross-fitted figure where one candidate is right everywhere', () => {
    const inputs: JudgeInputs = { examples, checkpoints: new Map([['sft', rows('sft', (i) => peaked(golds[i] as Grade))]]), lexical: examples.map(uniform) };
    const { nested, predictions } = nestedSelection('nested', inputs, [], stream(2), unpooled);
    expect(predictions.map((p) => p.predicted)).toEqual(golds);
    expect(nested.chosen).toEqual(Array.from({ length: 5 }, () => 'sft, median'));
    expect(nested.folds.examples).toEqual([8, 8, 8, 8, 8]);
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
