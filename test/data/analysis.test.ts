import { describe, expect, it } from 'vitest';
import { parseCompletion, renderCompletion, verifyCompletion } from '../../stages/lib/relevance/completion.ts';
import { analyzePair, parseQuery, toReasoningSteps } from '../../stages/lib/relevance/analysis.ts';
import { applyRules, evaluateCondition, type Rule } from '../../stages/lib/relevance/rules.ts';
import { builtinGraph, itemOf } from './fixtures.ts';

const kg = builtinGraph();

describe('every rule in data/rules.yaml', () => {
  for (const rule of kg.knowledge.rules) {
    it(`${rule.id} fires on its example and decides ${rule.grade}`, () => {
      const { query, item } = rule.example;
      const analysis = analyzePair(query, itemOf(item.type, item.title, item.attributes, { description: item.description, image_caption: item.image_caption }), kg);
      expect(analysis.rules).toContain(rule.id);
      expect(analysis.decidingRule).toBe(rule.id);
      // The grade is the rule's own declared grade: the example exists to show the rule deciding.
      expect(analysis.grade).toBe(rule.grade);
      expect(analysis.capabilities.includes('rule')).toBe(!rule.general);
    });
  }
});

describe('condition language', () => {
  const features = { link: 'same', core: true, unknowns: 2, 'attr.colour': 'conflict' };
  it('evaluates all / any / not, lists and counts', () => {
    expect(evaluateCondition({ all: [{ link: ['same', 'subtype'] }, { core: true }] }, features)).toBe(true);
    expect(evaluateCondition({ any: [{ link: 'none' }, { unknowns: { gte: 3 } }] }, features)).toBe(false);
    expect(evaluateCondition({ not: { 'attr.colour': 'match' } }, features)).toBe(true);
    expect(evaluateCondition({ unknowns: { lte: 2 } }, features)).toBe(true);
    // A count test on a missing or non-numeric feature is false, never an accident of coercion.
    expect(evaluateCondition({ link: { gte: 0 } }, features)).toBe(false);
  });

  it('returns every firing rule with the highest priority deciding', () => {
    const rule = (id: string, priority: number, when: Rule['when']): Rule => ({ id, priority, when, grade: 'L3', sentence: id, general: false, example: { query: '', item: { title: '', type: '', attributes: {} } } });
    const outcome = applyRules([rule('R-LOW', 1, { core: true }), rule('R-HIGH', 9, { link: 'same' }), rule('R-NO', 50, { link: 'none' })], features);
    expect(outcome.fired.map((r) => r.id)).toEqual(['R-HIGH', 'R-LOW']);
    expect(outcome.deciding.id).toBe('R-HIGH');
    expect(() => applyRules([rule('R-NO', 1, { link: 'none' })], features)).toThrow(/no relevance rule fires/);
  });
});

describe('query parsing and entity linking', () => {
  const product = (q: string) => parseQuery(q, kg).product;

  it('links synonyms, colloquial names and plurals', () => {
    expect(product('kicks')).toBe('sneakers');
    expect(product('telly')).toBe('television');
    expect(product('couch')).toBe('sofa');
    expect(product('hiking boot')).toBe('hiking boots');
    expect(product('dog leashes')).toBe('dog leash');
  });

  it('links listed misspellings and unlisted small typos', () => {
    expect(product('labtop')).toBe('laptop');
    // Not in lexicon.yaml: one transposition away (edit distance 2 for a word of 8+ letters).
    expect(product('headphoens')).toBe('headphones');
    expect(product('runnign shoes')).toBe('running shoes');
    expect(parseQuery('runnign shoes', kg).mentions[0]?.via).toBe('fuzzy');
    // Too far from anything: no guess.
    expect(product('zorblax')).toBe('');
  });

  it('reads constraints, value synonyms, compatibility, negation and implicit needs', () => {
    expect(parseQuery('navy wool sweater for men', kg)).toMatchObject({ product: 'sweater', constraints: { colour: 'blue', material: 'wool', gender: 'men' } });
    expect(parseQuery('phone case for iphone 15', kg)).toMatchObject({ product: 'phone case', constraints: { compatibility: 'iphone 15' } });
    expect(parseQuery('iphone 15', kg)).toMatchObject({ product: 'phone', constraints: { model: 'iphone 15' } });
    expect(parseQuery('sofa without leather', kg)).toMatchObject({ product: 'sofa', constraints: {}, negations: { material: 'leather' } });
    expect(parseQuery('something to keep coffee hot', kg)).toMatchObject({ product: 'thermos', intent: 'keep coffee hot' });
  });
});

describe('analyzePair', () => {
  it('relates products through the graph with a path', () => {
    const boots = analyzePair('boots', itemOf('hiking boots', 'Merrell Hiking Boots', { brand: 'merrell' }), kg);
    expect(boots.category).toEqual({ relation: 'match', link: 'subtype', path: ['hiking boots', 'is-a', 'boots'] });
    expect(boots.grade).toBe('L4');
  });

  it('reads visual attributes from the image caption only when the item does not state them', () => {
    const item = itemOf('t-shirt', 'Uniqlo T-Shirt', { brand: 'uniqlo' }, { image_caption: 'Product photo: red, striped pattern.' });
    const analysis = analyzePair('red t-shirt', item, kg);
    expect(analysis.item.attributes).toMatchObject({ colour: 'red', pattern: 'striped' });
    expect(analysis.attributes).toEqual({ colour: 'match' });
    expect(analysis.capabilities).toContain('visual');
  });

  it('lets a unisex item satisfy a gendered query', () => {
    expect(analyzePair('hoodie for women', itemOf('hoodie', 'Nike Hoodie', { brand: 'nike', gender: 'unisex' }), kg).attributes).toEqual({ gender: 'match' });
  });

  it('renders a chain of thought the completion verifier accepts', () => {
    const item = itemOf('phone case', 'Spigen Phone Case for Galaxy S24', { brand: 'spigen', compatibility: 'galaxy s24' });
    const analysis = analyzePair('phone case for iphone 15', item, kg);
    const steps = toReasoningSteps(analysis);
    const verification = verifyCompletion(parseCompletion(renderCompletion(steps, analysis.grade)), steps, analysis.grade);
    expect(verification.accepted).toBe(true);
    expect(steps.rules).toEqual(['R-COMPAT']);
    expect(analysis.grade).toBe('L2');
  });
});
