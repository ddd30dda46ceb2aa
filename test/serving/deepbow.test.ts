import { describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import { DEEPBOW_FORMAT, deepBowProblem, distillLoss, judgeItems, lossGradients, trainDeepBow, type DeepBowExample, type DeepBowModel } from '../../stages/lib/serving/deepbow.ts';
import type { Grade, Item } from '../../stages/lib/relevance/types.ts';
import { builtinGraph, itemOf } from '../data/fixtures.ts';

const tiny: DeepBowModel = {
  format: DEEPBOW_FORMAT,
  query: { boot: 2, waterproof: 1, '<unk>': 0.5 },
  item: { boot: 1.5, waterproof: 2, '<unk>': 1 },
  missing: { boot: 3, waterproof: 1, '<unk>': 0.25 },
  cuts: [-1, 0, 1],
  synonyms: { kicks: 'sneakers' },
};
const item = (title: string): Item => ({ title, category: ['Shoes'], attributes: {} });

describe('DeepBoW scoring', () => {
  it('sums the matched words and charges the missing ones (derived by hand)', () => {
    // Query bag {waterproof, boot}; item bag {leather, boot, shoe}.
    // boot matches: wq·wd = 2 · 1.5 = 3; waterproof is missing: −mq = −1; s = 2.
    // P(≤L1) = σ(−1−2) = 0.047426, P(≤L2) = σ(0−2) = 0.119203, P(≤L3) = σ(1−2) = 0.268941, so
    // P = 0.047426, 0.071777, 0.149738, 0.731059: L4 with confidence 0.731059.
    const [j] = judgeItems(tiny, 'waterproof boots', [item('Leather Boots')]);
    expect(j?.score).toBeCloseTo(2, 12);
    expect(j?.grade).toBe('L4');
    const p = j?.probabilities as Record<Grade, number>;
    expect([p.L1, p.L2, p.L3, p.L4].map((x) => Number(x.toFixed(6)))).toEqual([0.047426, 0.071777, 0.149738, 0.731059]);
    expect(j?.confidence).toBeCloseTo(0.731059, 6);
    expect(j?.reasons).toEqual([
      { term: 'boot', value: 3, kind: 'match' },
      { term: 'waterproof', value: -1, kind: 'missing' },
    ]);
  });

  it('expands synonyms from the knowledge graph and weighs unknown words as <unk>', () => {
    // "kicks" -> bag {kick, sneaker (from kicks)}; item bag {red, sneaker, shoe}.
    // kick is missing and unknown: −mq(<unk>) = −0.25; sneaker matches, both sides unknown:
    // wq(<unk>)·wd(<unk>) = 0.5 · 1 = 0.5; s = 0.25.
    // P(≤Lk) = σ(θk − 0.25) = 0.222700, 0.437823, 0.679179 -> P = 0.222700, 0.215123, 0.241356, 0.320821.
    const [j] = judgeItems(tiny, 'kicks', [item('Red Sneakers')]);
    expect(j?.score).toBeCloseTo(0.25, 12);
    const p = j?.probabilities as Record<Grade, number>;
    expect([p.L1, p.L2, p.L3, p.L4].map((x) => Number(x.toFixed(5)))).toEqual([0.2227, 0.21512, 0.24136, 0.32082]);
    expect(j?.reasons).toEqual([
      { term: 'sneaker', value: 0.5, kind: 'match', from: 'kicks' },
      { term: 'kick', value: -0.25, kind: 'missing' },
    ]);
  });

  it('matches the words of a Japanese query, which writes no spaces (derived by hand)', () => {
    const japanese: DeepBowModel = {
      format: DEEPBOW_FORMAT,
      query: { 防水: 1, ブーツ: 2, '<unk>': 0.5 },
      item: { 防水: 1, ブーツ: 1, '<unk>': 1 },
      missing: { 防水: 1, ブーツ: 3, '<unk>': 0.25 },
      cuts: [-1, 0, 1],
      synonyms: {},
    };
    // Query bag {防水, ハイキング, ブーツ} (ハイキング unknown). Boots: all three match:
    // 1·1 + 0.5·1 + 2·1 = 3.5. Sponge: all three missing: −1 − 0.25 − 3 = −4.25.
    const [boots, sponge] = judgeItems(japanese, '防水ハイキングブーツ', [item('メンズ 防水 ハイキングブーツ 軽量 ブラウン'), item('キッチンスポンジ 10個入り')]);
    expect(boots?.score).toBeCloseTo(3.5, 12);
    expect(boots?.reasons).toEqual([
      { term: 'ブーツ', value: 2, kind: 'match' },
      { term: '防水', value: 1, kind: 'match' },
      { term: 'ハイキング', value: 0.5, kind: 'match' },
    ]);
    expect(sponge?.score).toBeCloseTo(-4.25, 12);
    expect(sponge?.reasons.map((r) => r.kind)).toEqual(['missing', 'missing', 'missing']);
  });

  it('has the gradients of its loss (checked against central differences)', () => {
    const target: Record<Grade, number> = { L1: 0.1, L2: 0.2, L3: 0.3, L4: 0.4 };
    const loss = (cuts: number[], s: number) => {
      const m = { ...tiny, cuts: cuts as [number, number, number], query: { x: s }, item: { x: 1 }, missing: {} };
      return distillLoss(m, [{ query: 'x', item: item('x'), target }]);
    };
    const cuts = [-0.7, 0.2, 1.1];
    const s = 0.4;
    const { ds, dcuts } = lossGradients(cuts, s, target);
    const h = 1e-6;
    expect(ds).toBeCloseTo((loss(cuts, s + h) - loss(cuts, s - h)) / (2 * h), 5);
    for (let k = 0; k < 3; k++) {
      const up = [...cuts];
      const down = [...cuts];
      up[k] = (up[k] as number) + h;
      down[k] = (down[k] as number) - h;
      expect(dcuts[k]).toBeCloseTo((loss(up, s) - loss(down, s)) / (2 * h), 5);
    }
  });

  it('learns which words decide the grade and zeroes the rest', () => {
    // The teacher says L4 when the item is a boot and L1 otherwise; "blue" says nothing.
    const oneHot = (g: Grade): Record<Grade, number> => ({ L1: 0, L2: 0, L3: 0, L4: 0, [g]: 1 });
    const examples: DeepBowExample[] = [];
    for (let i = 0; i < 20; i++) {
      examples.push({ query: 'blue boots', item: item(i % 2 ? 'Blue Boots' : 'Boots'), target: oneHot('L4') });
      examples.push({ query: 'blue boots', item: item(i % 2 ? 'Blue Kettle' : 'Kettle'), target: oneHot('L1') });
    }
    const rng = new Rng(1);
    const model = trainDeepBow(examples, { epochs: 30, lr: 0.3, l1: 0.02, minCount: 1, synonyms: {}, shuffle: (xs) => rng.shuffle(xs) });
    expect(deepBowProblem(JSON.parse(JSON.stringify(model)))).toBeUndefined();
    const judged = judgeItems(model, 'blue boots', [item('Boots'), item('Blue Boots'), item('Kettle'), item('Blue Kettle')]);
    expect(judged.map((j) => j.grade)).toEqual(['L4', 'L4', 'L1', 'L1']);
    // "kettle" never appears in a query, and "blue" never decides: the penalty zeroes the weight
    // that "blue" would add when matched (its query weight or its item weight).
    expect(Math.min(model.query.blue ?? 0, model.item.blue ?? 0)).toBe(0);
    expect(model.query.boot).toBeGreaterThan(0);
  });

  it('names the key of a corrupt model file', () => {
    expect(deepBowProblem({ ...tiny, cuts: [1, 0, 2] })).toBe('cuts: expected three increasing numbers, got [1,0,2]');
    expect(deepBowProblem({ ...tiny, item: { boot: -1 } })).toBe('item.boot: expected a number >= 0, got -1');
    expect(deepBowProblem({ ...tiny, format: 'x' })).toBe('format: expected "deepbow/1", got "x"');
  });

  it('checks the feature weights of a model file', () => {
    expect(deepBowProblem({ ...tiny, features: { 'link=same': -2 } })).toBeUndefined();
    expect(deepBowProblem({ ...tiny, features: { 'link=same': 'x' } })).toBe('features.link=same: expected a number, got "x"');
  });
});

describe('DeepBoW with knowledge-graph features', () => {
  // Words weigh nothing here (every table holds only <unk> at 0), so the score is the features' sum.
  const featuresOnly: DeepBowModel = {
    format: DEEPBOW_FORMAT,
    query: { '<unk>': 0 },
    item: { '<unk>': 0 },
    missing: { '<unk>': 0 },
    cuts: [-1, 0, 1],
    synonyms: {},
    features: { 'link=same': 2, 'link=sibling': -1, 'brand=conflict': -3, 'brand=match': 0.5 },
  };

  it('adds the weights of the pair\'s features to the score (derived by hand)', () => {
    // The built-in graph reads "nike running shoes" as product running shoes with brand nike. The
    // Adidas item is the same product in another brand: link=same (+2), brand=conflict (−3), s = −1:
    // P(≤Lk) = σ(θk + 1) = σ(0), σ(1), σ(2) = 0.5, 0.731059, 0.880797 -> P = 0.5, 0.231059, 0.149738, 0.119203.
    // The Nike item: link=same (+2), brand=match (+0.5), s = 2.5: σ(−3.5), σ(−2.5), σ(−1.5) =
    // 0.029312, 0.075858, 0.182426 -> P = 0.029312, 0.046546, 0.106567, 0.817574.
    const kg = builtinGraph();
    const [adidas, nike] = judgeItems(featuresOnly, 'nike running shoes', [itemOf('running shoes', 'Adidas Running Shoes', { brand: 'adidas' }), itemOf('running shoes', 'Nike Running Shoes', { brand: 'nike' })], kg);
    const rounded = (p: Record<Grade, number>) => [p.L1, p.L2, p.L3, p.L4].map((x) => Number(x.toFixed(6)));
    expect(adidas?.score).toBeCloseTo(-1, 12);
    expect(rounded(adidas?.probabilities as Record<Grade, number>)).toEqual([0.5, 0.231059, 0.149738, 0.119203]);
    expect(adidas?.reasons).toEqual([
      { term: 'brand=conflict', value: -3, kind: 'feature' },
      { term: 'link=same', value: 2, kind: 'feature' },
    ]);
    expect(nike?.score).toBeCloseTo(2.5, 12);
    expect(rounded(nike?.probabilities as Record<Grade, number>)).toEqual([0.029312, 0.046546, 0.106567, 0.817574]);
    expect(nike?.grade).toBe('L4');
  });

  it('refuses to score a feature model without the graph', () => {
    expect(() => judgeItems(featuresOnly, 'boots', [item('Boots')])).toThrow('this DeepBoW model weighs knowledge-graph features: scoring it needs the knowledge graph');
  });

  it('learns what words cannot see: two items with the same words, of different product types', () => {
    // Both items hold the words {hiking, rain, boot}; the leaf of the category path makes one hiking
    // boots (link=same: the teacher says L4) and the other rain boots (link=sibling: L2).
    const kg = builtinGraph();
    const hiking: Item = { title: 'Boots', category: ['Rain Boots', 'Hiking Boots'], attributes: {} };
    const rain: Item = { title: 'Boots', category: ['Hiking Boots', 'Rain Boots'], attributes: {} };
    const oneHot = (g: Grade): Record<Grade, number> => ({ L1: 0, L2: 0, L3: 0, L4: 0, [g]: 1 });
    const examples: DeepBowExample[] = Array.from({ length: 20 }, (_, i) => ({ query: 'hiking boots', item: i % 2 ? hiking : rain, target: oneHot(i % 2 ? 'L4' : 'L2') }));
    const train = (withGraph: boolean) => {
      const rng = new Rng(1);
      return trainDeepBow(examples, { epochs: 30, lr: 0.3, l1: 0.001, minCount: 1, synonyms: {}, ...(withGraph ? { kg } : {}), shuffle: (xs) => rng.shuffle(xs) });
    };
    const [wordsHiking, wordsRain] = judgeItems(train(false), 'hiking boots', [hiking, rain]);
    expect(wordsHiking?.score).toBe(wordsRain?.score);
    const model = train(true);
    expect(deepBowProblem(JSON.parse(JSON.stringify(model)))).toBeUndefined();
    expect(judgeItems(model, 'hiking boots', [hiking, rain], kg).map((j) => j.grade)).toEqual(['L4', 'L2']);
    expect(model.features?.['link=same']).toBeGreaterThan(model.features?.['link=sibling'] as number);
  });
});
