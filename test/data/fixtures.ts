/** Shared, cached fixtures for the relevance-data tests: the built-in knowledge and a small world. */
import { Rng } from '../../pipeline/rng.ts';
import { buildKnowledgeGraph, type KnowledgeGraph } from '../../stages/lib/relevance/kg.ts';
import { loadKnowledge } from '../../stages/lib/relevance/knowledge.ts';
import type { Item } from '../../stages/lib/relevance/types.ts';
import { generateWorld, worldParamsSchema, type World } from '../../stages/lib/relevance/world.ts';

let graph: KnowledgeGraph | undefined;
export function builtinGraph(): KnowledgeGraph {
  graph ??= buildKnowledgeGraph(loadKnowledge());
  return graph;
}

/** 80 queries x 8 candidates: big enough for every intent, small enough for a fast test. */
export function smallWorld(seed = 13, overrides: Record<string, unknown> = {}): World {
  return generateWorld(builtinGraph(), worldParamsSchema.parse({ queries: 80, itemsPerType: 4, ...overrides }), new Rng(seed, 'world'));
}

/** An item of a product type, with the ontology's category path. */
export function itemOf(type: string, title: string, attributes: Record<string, string> = {}, extra: Partial<Item> = {}): Item {
  const t = builtinGraph().types.get(type);
  if (!t) throw new Error(`test fixture: unknown type ${type}`);
  return { title, category: t.path, attributes, ...extra };
}
