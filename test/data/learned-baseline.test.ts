import { describe, expect, it } from 'vitest';
import { fitLearnedBaseline, lexicalFeatures } from '../../stages/lib/relevance/learned-baseline.ts';
import type { Grade, RelevanceExample } from '../../stages/lib/relevance/types.ts';

let n = 0;
const pair = (query: string, title: string, label: Grade, description = ''): RelevanceExample => ({
  id: `p${++n}`,
  query,
  item: { title, category: [], attributes: {}, description },
  label,
  meta: { capabilities: [], difficulty: 'medium', rules: [], source: 'fixture' },
});

// Tiny train split: the whole query in the title is L4, half of it L2, none of it L1.
const products = ['desk lamp', 'usb cable', 'phone case', 'gaming mouse', 'laptop stand', 'hdmi cable'];
const train = products.flatMap((q, i) => {
  const other = products[(i + 3) % products.length]!;
  return [pair(q, `Acme ${q} deluxe`, 'L4'), pair(q, `${q.split(' ')[0]} adapter`, 'L2'), pair(q, `Zento ${other}`, 'L1')];
});

describe('the learned lexical baseline', () => {
  it('computes coverage, phrase and length features by hand-checkable rules', () => {
    const features = lexicalFeatures(train);
    // "desk lamp" against "Desk lamp, black" + description "a lamp": both terms in the title
    // (coverage 1, term coverage 1), the phrase in the title and anywhere, 2 query terms.
    const [, , coverage, termCoverage, phraseTitle, phraseAny, queryTerms] = features(pair('desk lamp', 'Desk lamp, black', 'L4', 'a lamp'));
    expect([coverage, termCoverage, phraseTitle, phraseAny, queryTerms]).toEqual([1, 1, 1, 1, 2]);
    // "desk lamp" against "Lamp shade" + description "for a desk": "lamp" in the title, "desk" only in
    // the description: the item covers both terms, the phrase appears nowhere.
    const [, bm25Description, coverage2, termCoverage2, phraseTitle2, phraseAny2] = features(pair('desk lamp', 'Lamp shade', 'L2', 'for a desk'));
    expect([coverage2, termCoverage2, phraseTitle2, phraseAny2]).toEqual([1, 1, 0, 0]);
    expect(bm25Description).toBeGreaterThan(0);
  });

  it('fits train and grades unseen pairs by their overlap', () => {
    const fitted = fitLearnedBaseline(train);
    expect(fitted.trainMacroF1).toBe(1);
    expect(fitted.predict(pair('usb cable', 'Acme usb cable deluxe 2m', 'L4'))).toBe('L4');
    expect(fitted.predict(pair('usb cable', 'Zento desk lamp', 'L1'))).toBe('L1');
    expect(fitted.predict(pair('usb cable', 'usb adapter', 'L2'))).toBe('L2');
  });

  it('gives grade probabilities: the softmax of its linear scores on standardised features', () => {
    const fitted = fitLearnedBaseline(train);
    const example = pair('usb cable', 'usb cable organiser', 'L3');
    const x = fitted.features(example).map((v, j) => (v - fitted.mean[j]!) / fitted.std[j]!);
    const scores = fitted.bias.map((b, k) => b + x.reduce((s, v, j) => s + v * fitted.weights[k]![j]!, 0));
    const exps = scores.map((z) => Math.exp(z));
    const sum = exps.reduce((a, b) => a + b, 0);
    const probs = fitted.probabilities(example);
    (['L1', 'L2', 'L3', 'L4'] as const).forEach((g, k) => expect(probs[g]).toBeCloseTo(exps[k]! / sum, 12));
    // predict is the most probable grade.
    const best = (['L1', 'L2', 'L3', 'L4'] as const).reduce((a, g) => (probs[g] > probs[a] ? g : a));
    expect(fitted.predict(example)).toBe(best);
  });
});
