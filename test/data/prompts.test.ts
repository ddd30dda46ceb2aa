import { describe, expect, it } from 'vitest';
import { analyzePair } from '../../stages/lib/relevance/analysis.ts';
import { lexicalBaseline } from '../../stages/lib/relevance/baseline.ts';
import { countTokens, PromptBuilder, promptParamsSchema, rankFacts } from '../../stages/lib/relevance/prompts.ts';
import { normalise } from '../../stages/lib/relevance/text.ts';
import { classificationMetrics } from '../../stages/lib/relevance/grade-agreement.ts';
import { builtinGraph, itemOf, smallWorld } from './fixtures.ts';

const kg = builtinGraph();
const world = smallWorld();
const tokensOf = (messages: { content: string }[]) => messages.reduce((n, m) => n + countTokens(m.content), 0);

describe('icl prompts', () => {
  it('states the guideline and every rule in the system prompt, and the pair in the user message', () => {
    const builder = new PromptBuilder(kg, world.splits.train, promptParamsSchema.parse({}));
    const example = world.splits.test[0]!;
    const record = builder.build(example);
    expect(record.messages.map((m) => m.role)).toEqual(['system', 'user']);
    for (const rule of kg.knowledge.rules) expect(record.messages[0]!.content).toContain(`${rule.id} (${rule.grade}): ${rule.sentence}`);
    expect(record.messages[1]!.content).toContain(`Query: ${example.query}\nItem title: ${example.item.title}`);
    expect(record.example).toBe(example);
    expect(record.facts.length).toBe(8);
  });

  it('puts the facts on the KG path that relates the products first', () => {
    const analysis = analyzePair('phone case for iphone 15', itemOf('phone', 'Apple Smartphone iPhone 15', { brand: 'apple', model: 'iphone 15' }), kg);
    const facts = rankFacts(analysis, [], kg);
    expect(facts[0]).toBe('phone case accessory-of phone');
    expect(facts).toContain('iphone 15 model-of phone');
  });

  it("ranks what explains the query's own words next, then the queried product's is-a chain", () => {
    // "philips razor" against razor blades: the accessory edge first; then the fact that says philips is a
    // brand of razors, although three other razor facts sort before it alphabetically (fusion5, gillette, mach3).
    const blades = analyzePair('philips razor', itemOf('razor blades', 'Gillette Replacement Razor Blades', { brand: 'gillette' }), kg);
    expect(rankFacts(blades, [], kg).slice(0, 2)).toEqual(['razor blades accessory-of razor', 'philips brand-of razor']);

    // Against an unrelated item the path is no chain of facts ("is-a Home & Kitchen not ..."), so what the
    // mismatch is judged against comes first after the brand: razor's is-a chain up to its department.
    const toaster = analyzePair('philips razor', itemOf('toaster', 'Breville Toaster', { brand: 'breville' }), kg);
    const ranked = rankFacts(toaster, [], kg);
    const chain = kg.ancestors('razor');
    expect(ranked[0]).toBe('philips brand-of razor');
    expect(new Set(ranked.slice(1, 1 + chain.length))).toEqual(new Set(['razor', ...chain].slice(0, -1).map((type, i) => `${type} is-a ${chain[i]}`)));
  });

  it('never shows a dev or test example, nor the same query, as an exemplar', () => {
    const builder = new PromptBuilder(kg, world.splits.train, promptParamsSchema.parse({ shots: 3 }));
    const trainPairs = new Set(world.splits.train.map((e) => `${e.query}\n${e.item.title}`));
    for (const example of [...world.splits.dev, ...world.splits.test, ...world.splits.train.slice(0, 40)]) {
      const user = builder.build(example).messages[1]!.content;
      const shots = [...user.matchAll(/Query: (.*)\nItem title: (.*)\nGrade: L\d/g)];
      expect(shots.length).toBe(3);
      for (const [, query, title] of shots) {
        expect(trainPairs.has(`${query}\n${title}`)).toBe(true);
        expect(normalise(query!)).not.toBe(normalise(example.query));
      }
    }
  });

  it('shows no exemplar with shots: 0', () => {
    const builder = new PromptBuilder(kg, world.splits.train, promptParamsSchema.parse({ shots: 0 }));
    for (const example of world.splits.dev.slice(0, 20)) expect(builder.build(example).messages[1]!.content).not.toContain('Graded examples');
  });

  it('holds the token budget by dropping the least relevant facts first', () => {
    const full = new PromptBuilder(kg, world.splits.train, promptParamsSchema.parse({ rules: 'none', maxTokens: 100_000 }));
    const example = world.splits.dev[3]!;
    const unbounded = full.build(example);
    const budget = tokensOf(unbounded.messages) - 12;
    const tight = new PromptBuilder(kg, world.splits.train, promptParamsSchema.parse({ rules: 'none', maxTokens: budget }));
    const record = tight.build(example);
    expect(tokensOf(record.messages)).toBeLessThanOrEqual(budget);
    // A fact line costs at least 4 tokens ("- a is-a b"), so 12 over the budget drops 1 to 3 facts, and from the end.
    expect(record.facts.length).toBeLessThan(unbounded.facts.length);
    expect(record.facts).toEqual(unbounded.facts.slice(0, record.facts.length));
    expect(tight.stats).toMatchObject({ shotsDropped: 0, overBudget: 0 });

    // A budget below the bare pair drops facts, then exemplars, then the description, and says it is still over.
    const tiny = new PromptBuilder(kg, world.splits.train, promptParamsSchema.parse({ rules: 'none', maxTokens: 64 }));
    const bare = tiny.build(example);
    expect(bare.facts).toEqual([]);
    expect(bare.messages[1]!.content).not.toContain('Graded examples');
    expect(bare.messages[1]!.content).not.toContain('Description:');
    expect(tiny.stats.overBudget).toBe(1);
  });
});

describe('lexical baseline', () => {
  const baseline = lexicalBaseline(world.splits.train, world.splits.dev);

  it('scores by IDF-weighted query coverage and cuts grades with increasing thresholds', () => {
    const [t1, t2, t3] = baseline.thresholds;
    expect(t1).toBeLessThanOrEqual(t2);
    expect(t2).toBeLessThanOrEqual(t3);
    // Every query word in the item's text: coverage 1; none: 0.
    expect(baseline.score({ query: 'ikea sofa', item: itemOf('sofa', 'Ikea Sofa') })).toBe(1);
    expect(baseline.score({ query: 'ikea sofa', item: itemOf('tent', 'Coleman Tent') })).toBe(0);
    expect(baseline.predict({ query: 'ikea sofa', item: itemOf('tent', 'Coleman Tent') })).toBe('L1');
  });

  it('tunes thresholds on dev at least as well as fixed quartiles', () => {
    const fixed = classificationMetrics(world.splits.dev.map((e) => {
      const s = baseline.score(e);
      return { gold: e.label, predicted: s < 0.25 ? 'L1' : s < 0.5 ? 'L2' : s < 0.75 ? 'L3' : 'L4' };
    }));
    expect(baseline.tuningMacroF1).toBeGreaterThanOrEqual(fixed.macroF1);
  });
});
