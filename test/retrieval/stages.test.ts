import { describe, expect, it } from 'vitest';
import type { Grade, RelevanceExample } from '../../stages/lib/relevance/types.ts';
import { judgedQueries, readCatalog } from '../../stages/lib/retrieval/catalog.ts';
import { buildTriplets, cotByQuery, queryAnalysis, thinkText } from '../../stages/embed/train.ts';
import { scoreRuns, unjudgedPairs } from '../../stages/eval-retrieval/score.ts';

const example = (query: string, title: string, label: Grade, id = `${query}/${title}`): RelevanceExample => ({
  id,
  query,
  item: { title, category: [], attributes: {} },
  label,
  meta: { capabilities: [], difficulty: 'easy', rules: [], source: 'test' },
});

describe('judged queries', () => {
  it('merges several raters of one pair into the lower median grade', () => {
    const [q] = judgedQueries([example('usb cable', 'USB-C cable', 'L4'), example('usb cable', 'USB-C cable', 'L2'), example('USB  Cable', 'USB-C cable', 'L3'), example('usb cable', 'USB-C cable', 'L1')]);
    // Ratings L1 L2 L3 L4: the lower median is L2 (not relevant).
    expect(q!.grades.get('USB-C cable')).toBe('L2');
    expect(q!.judgements).toBe(4);
  });
});

describe('Query-CoT-Item triplets', () => {
  const train = [
    example('usb c cable', 'Anker USB C cable braided', 'L4'),
    example('usb c cable', 'USB C charger cable adapter', 'L1'),
    example('usb c cable', 'HDMI cable', 'L1'),
    example('hdmi cable', 'HDMI cable', 'L4'),
    example('mouse pad', 'Mouse', 'L2'),
  ];

  it('positives are the judged-relevant items; hard negatives BM25’s best judged-irrelevant ones first', async () => {
    const catalog = await readCatalog('/nonexistent', { train });
    const { triplets, withoutPositive } = buildTriplets(train, catalog, new Map([['usb c cable', 'needs a USB-C cable']]), { hardNegatives: 1, descriptionChars: 0 });
    expect(withoutPositive).toBe(1); // mouse pad has no relevant item
    const usb = triplets.find((t) => t.query === 'usb c cable')!;
    expect(usb.positives).toEqual(['Anker USB C cable braided']);
    // "USB C charger cable adapter" shares usb, c and cable with the query; "HDMI cable" only cable.
    expect(usb.hardNegatives).toEqual(['USB C charger cable adapter']);
    expect(usb.cot).toBe('needs a USB-C cable');
    // hdmi cable: no judged-irrelevant item, so BM25's best item nobody judged for it.
    expect(triplets.find((t) => t.query === 'hdmi cable')!.hardNegatives).toHaveLength(1);
  });

  it('a query’s CoT is the query step of a relevant pair’s reasoning when it has one', () => {
    const records = [
      { completion: '<think>about the adapter</think><answer>L1</answer>', example: train[1]! },
      { completion: '<think>\nquery: cable; constraints: usb c; intent: none\nitem: cable; category: \n</think><answer>L4</answer>', example: train[0]! },
    ];
    expect(cotByQuery(records).get('usb c cable')).toBe('query: cable; constraints: usb c; intent: none');
    expect(queryAnalysis('<think> about the Anker cable </think>')).toBe('about the Anker cable');
    expect(thinkText('no tags')).toBe('');
  });
});

describe('scoreRuns', () => {
  const judged = judgedQueries([example('q', 'a', 'L4'), example('q', 'b', 'L1')]);
  const runs = [
    { method: 'bm25', queryId: 'q', query: 'q', retrieved: ['b', 'x', 'a'] },
    { method: 'dense:e', queryId: 'q', query: 'q', retrieved: ['x', 'a', 'y'] },
  ];
  const base = { runs, judged, k: 2, slicesOf: () => ({ new: true }), random: () => () => 0, resamples: 100 };

  it('the judge labels each unjudged retrieved pair once, and its label counts', () => {
    const calls: string[] = [];
    const scored = scoreRuns({ ...base, judge: (_q, key) => (calls.push(key), key === 'x' ? 'L3' : 'L1') });
    expect(calls.sort()).toEqual(['x', 'y']); // x retrieved by both methods, labelled once
    expect(scored.labels).toHaveLength(2);
    // bm25's first 2: b (L1), x (judge: L3) -> relevant {a, x}: recall@2 = 1/2.
    expect(scored.methods.bm25!.recall).toBe(0.5);
    // dense's first 2: x, a -> recall 1, ASH 1.
    expect(scored.methods['dense:e']!.recall).toBe(1);
    expect(scored.methods['dense:e']!.ash).toBe(1);
    expect(scored.slices.new!.bm25!.queries).toBe(1);
  });

  it('the pairs the trained judge is asked for: unjudged items among each run’s first max(K, 10), once each', () => {
    // Depth 10 here (K = 2): bm25 brings x, dense x again and y; a and b are human-judged.
    expect(unjudgedPairs(runs, judged, 2).map((p) => p.item).sort()).toEqual(['x', 'y']);
  });

  it('a pair the judge gives no grade is not relevant, not a label, and counted', () => {
    const scored = scoreRuns({ ...base, judge: (_q, key, queryId) => (queryId === 'q' && key === 'x' ? undefined : 'L4') });
    expect(scored.unlabelled).toBe(1);
    expect(scored.labels.map((l) => l.item)).toEqual(['y']);
    // bm25's first 2: b (L1), x (no grade): relevant {a, y}, none in the first 2.
    expect(scored.methods.bm25!.recall).toBe(0);
  });

  it('a relevant item the judge found in one method’s run counts against every method (pooled)', () => {
    const pooledRuns = [
      { method: 'bm25', queryId: 'q', query: 'q', retrieved: ['a', 'b'] },
      { method: 'dense:e', queryId: 'q', query: 'q', retrieved: ['z', 'a'] },
    ];
    const scored = scoreRuns({ ...base, runs: pooledRuns, judge: () => 'L4' });
    // Relevant for both: a (human L4) and z (judge L4, found by dense only). bm25 finds a: 1/2.
    expect(scored.methods.bm25!.recall).toBe(0.5);
    expect(scored.methods.bm25!.ash).toBe(0.5);
    expect(scored.methods['dense:e']!.recall).toBe(1);
  });

  it('without a judge an unjudged item is not relevant', () => {
    const scored = scoreRuns(base);
    expect(scored.labels).toHaveLength(0);
    expect(scored.methods.bm25!.recall).toBe(0); // a is third
    expect(scored.methods['dense:e']!.recall).toBe(1);
  });
});
