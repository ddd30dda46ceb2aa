import { describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import { parseCompletion, verifyCompletion } from '../../stages/lib/relevance/completion.ts';
import { rulesTeacher } from '../../stages/cot/rules-teacher.ts';
import { analyzePair, toReasoningSteps } from '../../stages/lib/relevance/analysis.ts';
import { buildCatalogKnowledge, headPhrases } from '../../stages/lib/relevance/catalog-kg.ts';
import { lexicalBucket, renderEvidence, unsupportedClaims, type PairEvidence } from '../../stages/lib/relevance/evidence.ts';
import { buildKnowledgeGraph } from '../../stages/lib/relevance/kg.ts';
import { loadKnowledge } from '../../stages/lib/relevance/knowledge.ts';
import { PromptBuilder, promptParamsSchema } from '../../stages/lib/relevance/prompts.ts';
import type { Grade, RelevanceExample } from '../../stages/lib/relevance/types.ts';

let n = 0;
const pair = (query: string, title: string, label: Grade, description?: string): RelevanceExample => ({
  id: `p${++n}`,
  query,
  item: { id: title, title, category: [], attributes: {}, ...(description ? { description } : {}) },
  label,
  meta: { capabilities: [], difficulty: 'medium', rules: [], source: 'fixture' },
});

// A tiny electronics catalog. Train: three "EF-..." titles (bare model codes) judged L4 for
// "phone case", and one L1 for a speaker query. Dev: three "QX-..." codes judged L4 for "phone
// case" too: the same evidence, but dev labels must never feed the graph.
const train = [
  pair('phone case', 'EF-100', 'L4'),
  pair('phone case', 'EF-200', 'L4'),
  pair('phone case', 'EF-300', 'L4'),
  pair('phone case', 'Leather Phone Case', 'L4'),
  pair('phone case', 'Zento Portable Bluetooth Speaker MX-1', 'L1'),
  pair('bluetooth speaker', 'Zento Portable Bluetooth Speaker MX-1', 'L4'),
  pair('bluetooth speaker', 'Zento Mini Speaker', 'L4'),
  pair('bluetooth speaker', 'Zento Waterproof Speaker, black', 'L4'),
  pair('bluetooth speaker', 'Silicone Phone Case for iPhone', 'L1'),
];
const dev = [pair('phone case', 'QX-1', 'L4'), pair('phone case', 'QX-2', 'L4'), pair('phone case', 'QX-3', 'L4')];
const test = [pair('waterproof phone case', 'EF-400', 'L3', 'waterproof shell')];
const options = { minTypeCount: 3, minBrandCount: 3, aliasMinSupport: 3, aliasMinScore: 0.5, department: 'catalog' };
const builtin = loadKnowledge();
const catalog = buildCatalogKnowledge(builtin, train, [...train, ...dev, ...test], options);
const kg = buildKnowledgeGraph(catalog.knowledge);

describe('knowledge induced from a catalog', () => {
  it("reads a title's head noun phrase: the last plain word of its naming segment, singular, with the word before it", () => {
    expect(headPhrases('Zento Portable Bluetooth Speaker MX-1')).toEqual(['speaker', 'bluetooth speaker']);
    expect(headPhrases('Silicone Phone Cases for iPhone 15')).toEqual(['case', 'phone case']);
    expect(headPhrases('EF-100')).toEqual([]);
  });

  it('induces product types and a brand from titles', () => {
    // Distinct texts whose head phrases they are (titles and train queries):
    //   speaker: 3 speaker titles + "bluetooth speaker" query = 4; bluetooth speaker: 1 title + 1 query = 2 (< 3);
    //   case: 2 case titles + "phone case" query = 3, phone case: the same 3.
    const types = catalog.knowledge.types.map((t) => t.name);
    expect(types).toEqual(['case', 'phone case', 'speaker']);
    expect(catalog.knowledge.types.find((t) => t.name === 'phone case')?.parent).toBe('case');
    // "zento" leads 3 distinct titles and appears in no other: a brand, making speakers.
    expect(catalog.knowledge.brands).toEqual([{ name: 'zento', makes: ['speaker'], aliases: [] }]);
    expect(catalog.counts['facts.types']).toBe(3);
    expect(catalog.counts['facts.brands']).toBe(1);
  });

  it('mines an alias from train pairs and none from dev or test labels', () => {
    // "ef": 3 relevant "phone case" pairs, 3 train titles have it: score 3 / 3 = 1 >= 0.5, support 3 >= 3.
    // "qx" has the same evidence in dev only; "100", "200", ... are in one title each.
    expect(catalog.mined).toEqual([{ alias: 'ef', type: 'phone case', support: 3, score: 1 }]);
    expect(kg.itemProduct(test[0]!.item)).toBe('phone case');
    expect(kg.itemProduct(dev[0]!.item)).toBeUndefined();
  });

  it('links head-final: a query or title names the product its last product word names', () => {
    expect(analyzePair('bluetooth speaker case', test[0]!.item, kg).query.product).toBe('case');
    expect(kg.itemProduct({ title: 'Phone Case for Speaker', category: [] })).toBe('phone case');
  });
});

describe('evidence in the prompt', () => {
  const builder = new PromptBuilder(kg, train, promptParamsSchema.parse({ facts: 2, shots: 0, rules: 'none', evidence: true }));
  const record = builder.build(test[0]!);

  it('says where each query word is met: title, description only, through an alias only, or missing', () => {
    // "waterproof" is a function value (built-in lexicon) found in the description; "phone" and "case"
    // are not in "EF-400" but name its product, which the mined alias "ef" gave.
    expect(record.evidence).toMatchObject({
      queryProduct: 'phone case',
      itemProduct: 'phone case',
      itemProductFrom: 'ef (mined)',
      link: 'same',
      title: [],
      description: ['waterproof'],
      alias: ['phone=phone case', 'case=phone case'],
      missing: [],
      constraints: { function: 'match' },
    });
    expect(record.messages[1]!.content).toContain('- through an alias only: phone=phone case, case=phone case');
  });

  it('renders every line, with the item value of a conflicting constraint', () => {
    const evidence: PairEvidence = {
      queryProduct: 'speaker',
      itemProduct: 'speaker',
      itemProductFrom: 'speaker (name)',
      link: 'same',
      title: ['speaker'],
      description: [],
      alias: [],
      missing: ['loud'],
      constraints: { colour: 'conflict', brand: 'unknown' },
      conflicts: { colour: 'white' },
      lexical: 'partial',
    };
    expect(renderEvidence(evidence)).toBe(
      [
        'Evidence:',
        '- products: query speaker; item speaker from speaker (name); link same',
        '- in title: speaker',
        '- in description only: none',
        '- through an alias only: none',
        '- missing: loud',
        '- constraints: brand: unknown, colour: conflict (item: white)',
        '- lexical match: partial',
      ].join('\n'),
    );
  });

  it('buckets lexical coverage in fixed thirds', () => {
    expect([0, 0.2, 1 / 3, 0.5, 2 / 3, 0.99, 1].map(lexicalBucket)).toEqual(['none', 'low', 'partial', 'partial', 'most', 'most', 'all']);
  });
});

describe('rationalisation (the gold round)', () => {
  const builder = new PromptBuilder(kg, train, promptParamsSchema.parse({ facts: 2, shots: 0, rules: 'none', evidence: true }));
  const teacher = rulesTeacher(kg, { noise: 0 });
  const records = [...train, ...dev, ...test].map((e) => builder.build(e));

  it('writes a completion for every example that verifies against the reference steps, the gold grade and the evidence', () => {
    for (const record of records) {
      const parsed = parseCompletion(teacher.write(record.example, 'gold', new Rng(1, 'gold')));
      const reference = toReasoningSteps(analyzePair(record.example.query, record.example.item, kg));
      expect(verifyCompletion(parsed, reference, record.example.label).accepted).toBe(true);
      expect(unsupportedClaims(parsed.steps, record.evidence!)).toEqual([]);
    }
  });

  it('rejects a completion that claims a match the evidence does not state', () => {
    const record = records.at(-1)!;
    const honest = teacher.write(record.example, 'gold', new Rng(1, 'gold'));
    const claimsBrand = honest.replace('attributes: function: match', 'attributes: brand: match, function: match');
    expect(claimsBrand).not.toBe(honest);
    expect(unsupportedClaims(parseCompletion(claimsBrand).steps, record.evidence!)).toEqual(['brand: match (evidence: not a constraint)']);
    const wrongProduct = honest.replace('item: phone case;', 'item: speaker;');
    expect(unsupportedClaims(parseCompletion(wrongProduct).steps, record.evidence!)).toEqual(['item product speaker (evidence: phone case)']);
  });
});
