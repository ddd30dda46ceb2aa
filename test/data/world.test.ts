import { describe, expect, it } from 'vitest';
import { analyzePair } from '../../stages/lib/relevance/analysis.ts';
import { normalise } from '../../stages/lib/relevance/text.ts';
import { GRADES } from '../../stages/lib/relevance/types.ts';
import { builtinGraph, smallWorld } from './fixtures.ts';

const kg = builtinGraph();
const world = smallWorld();
const all = [...world.splits.train, ...world.splits.dev, ...world.splits.test];

describe('world generator', () => {
  it('is deterministic for a seed and changes with it', () => {
    const again = smallWorld();
    expect(JSON.stringify(again.splits)).toBe(JSON.stringify(world.splits));
    expect(JSON.stringify(again.catalog)).toBe(JSON.stringify(world.catalog));
    expect(JSON.stringify(smallWorld(14).splits)).not.toBe(JSON.stringify(world.splits));
  });

  it('makes the configured number of queries and candidates', () => {
    // 80 queries x 8 candidates each (every pool holds at least 8 items: its type's 4 plus 12 random draws).
    expect(world.stats.queries).toBe(80);
    expect(all).toHaveLength(640);
    expect(new Set(all.map((e) => e.id)).size).toBe(640);
  });

  it('never puts one query in two splits', () => {
    const splitsOf = new Map<string, Set<string>>();
    for (const split of ['train', 'dev', 'test'] as const) {
      for (const e of world.splits[split]) splitsOf.set(normalise(e.query), (splitsOf.get(normalise(e.query)) ?? new Set()).add(split));
    }
    for (const [query, splits] of splitsOf) expect([...splits], query).toHaveLength(1);
    expect(world.splits.dev.length).toBeGreaterThan(0);
    expect(world.splits.test.length).toBeGreaterThan(0);
  });

  it('grades through analyzePair: the analysis reproduces every gold label and rule list', () => {
    for (const e of all) {
      const analysis = analyzePair(e.query, e.item, kg);
      expect(analysis.grade, e.id).toBe(e.label);
      expect(analysis.rules, e.id).toEqual(e.meta.rules);
    }
  });

  it('covers every grade, every intent and the four capabilities', () => {
    for (const g of GRADES) expect(world.stats.grades[g], g).toBeGreaterThan(all.length / 10);
    expect(Object.keys(world.stats.intents).sort()).toEqual(
      ['accessory', 'attribute', 'brand', 'compatibility', 'implicit', 'longtail', 'misspelling', 'negation', 'plain', 'synonym'],
    );
    for (const c of ['knowledge', 'reasoning', 'visual', 'rule']) expect(world.stats.capabilities[c], c).toBeGreaterThan(0);
  });

  it('states some visual attributes only in the image caption', () => {
    const captionOnly = world.catalog.filter((item) => /Product photo: /.test(item.image_caption ?? '') && item.attributes.colour === undefined);
    expect(captionOnly.length).toBeGreaterThan(0);
    const visual = all.filter((e) => e.meta.capabilities.includes('visual'));
    for (const e of visual) expect(analyzePair(e.query, e.item, kg).item.attributes, e.id).not.toEqual(e.item.attributes);
  });
});
