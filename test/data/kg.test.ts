import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildKnowledgeGraph, loadKnowledgeGraph, writeKnowledgeGraph } from '../../stages/lib/relevance/kg.ts';
import { builtinGraph, smallWorld } from './fixtures.ts';

const kg = builtinGraph();
const dir = mkdtempSync(path.join(os.tmpdir(), 'kg-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('knowledge graph', () => {
  it('relates product types with the path that shows how', () => {
    expect(kg.relate('phone', 'phone case')).toEqual({ link: 'accessory', relation: 'related', path: ['phone case', 'accessory-of', 'phone'] });
    expect(kg.relate('phone case', 'phone')).toMatchObject({ link: 'main', relation: 'related' });
    expect(kg.relate('headphones', 'earbuds')).toMatchObject({ link: 'substitute', path: ['earbuds', 'substitute-of', 'headphones'] });
    expect(kg.relate('trail running shoes', 'running shoes')).toMatchObject({ link: 'broader', relation: 'related' });
    expect(kg.relate('hiking boots', 'rain boots')).toEqual({ link: 'sibling', relation: 'related', path: ['rain boots', 'is-a', 'boots', 'parent-of', 'hiking boots'] });
    expect(kg.relate('phone', 'laptop')).toMatchObject({ link: 'department', relation: 'mismatch' });
    expect(kg.relate('phone', 'sofa')).toMatchObject({ link: 'none', relation: 'mismatch' });
    expect(kg.relate(undefined, 'sofa')).toMatchObject({ link: 'unknown' });
  });

  it('adds what the catalog shows and survives a write and load unchanged', async () => {
    const world = smallWorld();
    const graph = buildKnowledgeGraph(kg.knowledge, world.catalog);
    const catalogTriples = graph.triples.filter((t) => t.source === 'catalog');
    expect(catalogTriples.some((t) => t.p === 'attribute-of')).toBe(true);
    expect(catalogTriples.some((t) => t.p === 'compatible-with')).toBe(true);
    const stats = await writeKnowledgeGraph(dir, graph);
    expect(stats.triples).toBe(graph.triples.length);
    expect(stats['triples.catalog']).toBe(catalogTriples.length);
    const loaded = await loadKnowledgeGraph(dir);
    expect(loaded.triples).toEqual(graph.triples);
    expect([...loaded.aliases.entries()]).toEqual([...graph.aliases.entries()]);
  });
});
