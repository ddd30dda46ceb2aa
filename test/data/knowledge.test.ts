import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BUILTIN_KNOWLEDGE_DIR, loadKnowledge } from '../../stages/lib/relevance/knowledge.ts';

describe('built-in knowledge (data/)', () => {
  const k = loadKnowledge();

  it('has the size the issue asks for', () => {
    expect(new Set(k.types.map((t) => t.department)).size).toBeGreaterThanOrEqual(8);
    expect(k.types.filter((t) => !t.abstract).length).toBeGreaterThanOrEqual(60);
    expect(k.dimensions.map((d) => d.key)).toEqual([
      'brand', 'colour', 'material', 'size', 'gender', 'age group', 'style', 'pattern', 'season',
      'function', 'model', 'compatibility', 'pack quantity', 'capacity', 'power source', 'price tier', 'origin', 'condition',
    ]);
    expect(k.productAliases.length + k.valueAliases.length).toBeGreaterThanOrEqual(150);
    expect(k.rules.filter((r) => !r.general).length).toBeGreaterThanOrEqual(20);
    expect(k.relations.accessory).toContainEqual({ accessory: 'phone case', of: 'phone', compatibility: true });
  });

  it('gives every type a category path [department, group, display] and values for its attributes', () => {
    for (const t of k.types) {
      expect(t.path).toEqual([t.department, t.group, t.display]);
      if (!t.abstract) for (const key of t.attributes) expect(t.values[key]?.length, `${t.name}.${key}`).toBeGreaterThan(0);
    }
  });
});

describe('invalid knowledge files', () => {
  let dir: string | undefined;
  afterEach(() => dir && rmSync(dir, { recursive: true, force: true }));

  function copyWith(file: string, edit: (text: string) => string): string {
    dir = mkdtempSync(path.join(os.tmpdir(), 'knowledge-'));
    cpSync(BUILTIN_KNOWLEDGE_DIR, dir, { recursive: true });
    const target = path.join(dir, file);
    writeFileSync(target, edit(readFileSync(target, 'utf8')));
    return dir;
  }

  function errorOf(load: () => unknown): string {
    try {
      load();
    } catch (error) {
      return (error as Error).message;
    }
    throw new Error('expected the load to fail');
  }

  it('reports every problem with file, line, column and key path', () => {
    const knowledgeDir = copyWith('brands.yaml', (text) => text.replace('makes: [tripod]', 'makes: [tripodd]').replace('makes: [stroller]', 'makes: [strolller]'));
    const message = errorOf(() => loadKnowledge(knowledgeDir));
    const lines = readFileSync(path.join(knowledgeDir, 'brands.yaml'), 'utf8').split('\n');
    const tripodLine = lines.findIndex((l) => l.includes('tripodd')) + 1;
    const strollerLine = lines.findIndex((l) => l.includes('strolller')) + 1;
    expect(message).toMatch(new RegExp(`brands\\.yaml:${tripodLine}:\\d+: error: brands\\[\\d+\\]\\.makes\\[0\\]: "tripodd" is not a product type`));
    expect(message).toMatch(new RegExp(`brands\\.yaml:${strollerLine}:\\d+: error: .*"strolller"`));
    // Each typo also leaves its type without any brand (manfrotto and bugaboo are their only makers): 2 + 2.
    expect(message).toMatch(/ontology\.yaml:\d+:\d+: error: .*type "tripod" has no brand values/);
    expect(message).toContain('4 errors');
  });

  it('rejects a name that points to two entities', () => {
    const knowledgeDir = copyWith('lexicon.yaml', (text) => text.replace('sofa: [couch]', 'sofa: [couch, kicks]'));
    expect(errorOf(() => loadKnowledge(knowledgeDir))).toMatch(/lexicon\.yaml:\d+:\d+: error: .*"kicks" already names product (sofa|sneakers)/);
  });

  it('rejects a rule condition on an unknown feature', () => {
    const knowledgeDir = copyWith('rules.yaml', (text) => text.replace('when: { link: none }', 'when: { lnk: none }'));
    expect(errorOf(() => loadKnowledge(knowledgeDir))).toMatch(/rules\.yaml:\d+:\d+: error: rules\[0\]\.when: unknown feature "lnk"/);
  });
});
