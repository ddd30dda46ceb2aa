import { describe, expect, it } from 'vitest';
import { candidateRewrites, keepRewrite, mergeRewrites, partialOrderPairs, rewriteFeedback, servedRewrites } from '../../stages/lib/retrieval/rewrite.ts';

// Fixture: the long-tail query "household ventilation fans" retrieves [a, x, y]; a is relevant (L4),
// x not (L1), y unlabelled. Rewrite "ventilation fan" retrieves [a, b, c]: b L3, c L2.
// Rewrite "fan" retrieves [x, d, y]: d L3.
const grades: Record<string, number> = { a: 3, x: 0, b: 2, c: 1, d: 2 };
const grade = (key: string) => grades[key];
const original = ['a', 'x', 'y'];

describe('BEQUE rejection rule and feedback', () => {
  const good = rewriteFeedback(original, { text: 'ventilation fan', retrieved: ['a', 'b', 'c'] }, 3, grade);
  const tie = rewriteFeedback(original, { text: 'fan', retrieved: ['x', 'd', 'y'] }, 3, grade);

  it('keeps a rewrite that retrieves more relevant items than the original, rejects one that does not', () => {
    // Original: 1 relevant (a). "ventilation fan": 2 (a, b) -> kept. "fan": 1 (d) -> rejected.
    expect(good).toEqual({ rewrite: 'ventilation fan', relevant: 2, gained: 1, setRelevance: (3 + 2 + 1) / 3 });
    expect(keepRewrite(original, good, 3, grade)).toBe(true);
    expect(tie).toEqual({ rewrite: 'fan', relevant: 1, gained: 1, setRelevance: 2 / 3 });
    expect(keepRewrite(original, tie, 3, grade)).toBe(false);
  });

  it('the partial order gives one preference pair per strictly better rewrite', () => {
    expect(partialOrderPairs([good, tie])).toEqual([{ chosen: 'ventilation fan', rejected: 'fan' }]);
    expect(partialOrderPairs([tie, tie])).toEqual([]);
  });

  it('orders several rewrites into every strictly better–worse pair, none between equals', () => {
    // By (relevant, gained, set relevance): A (2, 1, 2.0) > B (2, 1, 1.0) > C = D (1, 0, 1.5).
    const f = (rewrite: string, relevant: number, gained: number, setRelevance: number) => ({ rewrite, relevant, gained, setRelevance });
    const pairs = partialOrderPairs([f('C', 1, 0, 1.5), f('A', 2, 1, 2), f('D', 1, 0, 1.5), f('B', 2, 1, 1)]);
    // A over B, C, D; B over C, D; C and D tie: 3 + 2 pairs, in the order the candidates came.
    expect(pairs).toEqual([
      { chosen: 'A', rejected: 'C' },
      { chosen: 'A', rejected: 'D' },
      { chosen: 'A', rejected: 'B' },
      { chosen: 'B', rejected: 'C' },
      { chosen: 'B', rejected: 'D' },
    ]);
  });

  it('serves the original and the rewrites merged', () => {
    // a: 1/61 + 1/61, x: 1/62, b: 1/62, y: 1/63, c: 1/63 -> a, x, b, y, c (first appearance on ties).
    expect(mergeRewrites(original, [['a', 'b', 'c']], 4)).toEqual(['a', 'x', 'b', 'y']);
  });
});

describe('rewrites from the reasoning model’s analysis', () => {
  it('the query step’s type with its constraint values, then the type alone; none when it names no type', async () => {
    const { rewritesFromAnalysis } = await import('../../stages/rewrite/index.ts');
    const { parseCompletion } = await import('../../stages/lib/relevance/completion.ts');
    const { normalise } = await import('../../stages/lib/relevance/text.ts');
    const parse = (line: string) => parseCompletion(`<think>\n${line}\n</think>`).steps.query;
    expect(rewritesFromAnalysis('household ventilation fans', 'query: ventilation fan; constraints: colour=white, material=!metal; intent: none\n', parse, normalise)).toEqual(['ventilation fan white', 'ventilation fan']);
    // The type alone equals the query: only the constrained rewrite is new.
    expect(rewritesFromAnalysis('Ventilation Fan', 'query: ventilation fan; constraints: colour=white; intent: none', parse, normalise)).toEqual(['ventilation fan white']);
    expect(rewritesFromAnalysis('garmin', 'query: none; constraints: none; intent: none', parse, normalise)).toEqual([]);
  });
});

describe('candidate rewrites for rejection sampling', () => {
  it('the given rewrites, then the query less one term each, without the query itself or repeats', async () => {
    const { normalise } = await import('../../stages/lib/relevance/text.ts');
    expect(candidateRewrites('household ventilation fans', ['ventilation fan', 'Household  Ventilation Fans', 'household fans'], normalise)).toEqual([
      'ventilation fan',
      'household fans',
      'ventilation fans',
      'household ventilation',
    ]);
    expect(candidateRewrites('garmin', [], normalise)).toEqual([]);
  });
});

describe('rewrites served', () => {
  it('only those sharing a term with the query, each once, never the query itself or nothing', async () => {
    const { normalise } = await import('../../stages/lib/relevance/text.ts');
    // "hoodie t" shares no term with "headset"; "Headset" is the query again; '' is nothing.
    expect(servedRewrites('headset', ['hoodie t', 'Headset', '', 'wireless headset', 'Wireless  Headset'], normalise)).toEqual(['wireless headset']);
    // "food" is a term of "dog food" (the query less one term); "<|im_end|>" has none of its terms.
    expect(servedRewrites('dog food', ['food', '<|im_end|>'], normalise)).toEqual(['food']);
  });
});
