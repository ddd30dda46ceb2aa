/**
 * The knowledge graph: typed triples from the knowledge files and the catalog, an alias index for
 * entity linking, and the graph questions the relevance analysis asks (how do two product types
 * relate, and by which path).
 *
 * Artifact layout (kind 'kg'), written by `writeKnowledgeGraph`, read by `loadKnowledgeGraph`:
 *   knowledge.json   the resolved knowledge bundle (knowledge.ts) the graph was built from
 *   triples.jsonl    {s, p, o, source}: every triple, knowledge first, then catalog-derived
 *   aliases.jsonl    {alias, kind, name, key?, via}: the entity-linking index
 *   stats.json       counts by predicate and alias kind
 */
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { distance } from 'fastest-levenshtein';
import type { AliasKind, Knowledge, ProductType } from './knowledge.ts';
import { readJsonl, writeJsonl } from '../io/jsonl.ts';
import { inflections, namingSegment, normalise, STOP_WORDS, tokenize } from './text.ts';
import type { Item } from './types.ts';

export const PREDICATES = [
  'is-a',
  'synonym-of',
  'brand-of',
  'model-of',
  'attribute-of',
  'accessory-of',
  'compatible-with',
  'complement-of',
  'substitute-of',
  'meets-need',
] as const;
export type Predicate = (typeof PREDICATES)[number];

export interface Triple {
  s: string;
  p: Predicate;
  o: string;
  source: 'knowledge' | 'catalog';
}

export type EntityKind = 'product' | 'brand' | 'value' | 'model' | 'need';
/** How a surface form reached its entity: its own name, an inflection, a lexicon alias, or a fuzzy match. */
export type LinkVia = 'name' | 'inflection' | AliasKind | 'mined' | 'fuzzy';

export interface EntityRef {
  kind: EntityKind;
  /** Canonical name: a product type, brand, model, need phrase or attribute value. */
  name: string;
  /** The attribute a value belongs to. */
  key?: string;
}
export interface AliasRecord extends EntityRef {
  alias: string;
  via: LinkVia;
}
export interface Mention extends EntityRef {
  /** Token span [start, end) in the normalised text. */
  start: number;
  end: number;
  surface: string;
  via: LinkVia;
}

/** How the item's product relates to the query's (docs/design.md §2 category step). */
export type Link = 'same' | 'subtype' | 'broader' | 'substitute' | 'accessory' | 'main' | 'complement' | 'sibling' | 'department' | 'none' | 'unknown';
export type CategoryRelation = 'match' | 'related' | 'mismatch';
export const LINK_RELATION: Record<Link, CategoryRelation> = {
  same: 'match',
  subtype: 'match',
  broader: 'related',
  substitute: 'related',
  accessory: 'related',
  main: 'related',
  complement: 'related',
  sibling: 'related',
  department: 'mismatch',
  none: 'mismatch',
  unknown: 'mismatch',
};

const MAX_ALIAS_TOKENS = 6;

export class KnowledgeGraph {
  readonly types: Map<string, ProductType>;
  readonly aliases = new Map<string, AliasRecord>();
  private readonly byDisplay = new Map<string, string>();
  private readonly bySubject = new Map<string, Triple[]>();
  private readonly byObject = new Map<string, Triple[]>();
  /** Names of products and brands that fuzzy linking may guess, by token count. */
  private readonly fuzzyCandidates = new Map<number, string[]>();
  private readonly accessoryOf = new Map<string, string[]>();
  private readonly pairs = { complement: new Set<string>(), substitute: new Set<string>() };
  private readonly dimensionOfValue = new Map<string, string>();

  constructor(
    readonly knowledge: Knowledge,
    readonly triples: readonly Triple[],
  ) {
    this.types = new Map(knowledge.types.map((t) => [t.name, t]));
    for (const t of knowledge.types) this.byDisplay.set(normalise(t.display), t.name);
    for (const triple of triples) {
      push(this.bySubject, triple.s, triple);
      push(this.byObject, triple.o, triple);
    }
    for (const r of knowledge.relations.accessory) push(this.accessoryOf, r.accessory, r.of);
    for (const [a, b] of knowledge.relations.complement) this.pairs.complement.add(`${a}|${b}`).add(`${b}|${a}`);
    for (const [a, b] of knowledge.relations.substitute) this.pairs.substitute.add(`${a}|${b}`).add(`${b}|${a}`);
    for (const d of knowledge.dimensions) for (const v of d.values) if (!this.dimensionOfValue.has(v)) this.dimensionOfValue.set(v, d.key);
    this.buildAliases();
    // Fuzzy linking considers one-word names of products and brands only: values and models are
    // short and close to each other ("64gb"/"65 inch"), where an edit-distance guess would mislead.
    for (const [alias, r] of this.aliases) {
      if (alias.length < 4 || (r.kind !== 'product' && r.kind !== 'brand') || r.via === 'misspelling') continue;
      const n = alias.split(' ').length;
      this.fuzzyCandidates.set(n, [...(this.fuzzyCandidates.get(n) ?? []), alias]);
    }
  }

  private addAlias(surface: string, ref: EntityRef, via: LinkVia): void {
    const alias = normalise(surface);
    // The loader has rejected names that point to two entities; first claim wins for derived forms.
    if (!this.aliases.has(alias)) this.aliases.set(alias, { alias, ...ref, via });
  }

  private buildAliases(): void {
    const k = this.knowledge;
    for (const t of k.types) this.addAlias(t.name, { kind: 'product', name: t.name }, 'name');
    for (const d of k.dimensions) {
      if (d.key === 'brand' || d.key === 'model' || d.key === 'compatibility') continue;
      for (const v of d.values) this.addAlias(v, { kind: 'value', name: v, key: d.key }, 'name');
    }
    for (const b of k.brands) {
      this.addAlias(b.name, { kind: 'brand', name: b.name }, 'name');
      for (const a of b.aliases) this.addAlias(a, { kind: 'brand', name: b.name }, 'misspelling');
    }
    for (const m of k.models) this.addAlias(m.name, { kind: 'model', name: m.name }, 'name');
    for (const n of k.needs) this.addAlias(n.phrase, { kind: 'need', name: n.phrase }, 'name');
    for (const a of k.productAliases) this.addAlias(a.alias, { kind: 'product', name: a.canonical }, a.kind);
    for (const a of k.valueAliases) this.addAlias(a.alias, { kind: 'value', name: a.canonical, key: this.dimensionOfValue.get(a.canonical) }, a.kind);
    // Plurals and singulars of product names and their aliases ("boot", "sneaker", "jeans").
    for (const [alias, record] of [...this.aliases]) {
      if (record.kind !== 'product') continue;
      for (const form of inflections(alias)) this.addAlias(form, { kind: 'product', name: record.name }, record.via === 'name' ? 'inflection' : record.via);
    }
  }

  dimensionOf(value: string): string | undefined {
    return this.dimensionOfValue.get(value);
  }

  /**
   * Entity mentions in `text`, longest match first, left to right. Words that match nothing may
   * link by a small edit distance to a product or brand name of as many words (1 edit, 2 for 8+
   * letters); a window holding a stop word or a known name is never guessed at.
   */
  link(text: string, options: { fuzzy?: boolean } = {}): Mention[] {
    const tokens = tokenize(text);
    const mentions: Mention[] = [];
    let i = 0;
    while (i < tokens.length) {
      let found: Mention | undefined;
      for (let n = Math.min(MAX_ALIAS_TOKENS, tokens.length - i); n >= 1 && !found; n--) {
        const surface = tokens.slice(i, i + n).join(' ');
        const record = this.aliases.get(surface);
        if (record) found = { kind: record.kind, name: record.name, key: record.key, start: i, end: i + n, surface, via: record.via };
      }
      if (!found && options.fuzzy !== false && !STOP_WORDS.has(tokens[i] as string)) {
        for (let n = Math.min(3, tokens.length - i); n >= 1 && !found; n--) {
          const window = tokens.slice(i, i + n);
          if (window.some((t) => STOP_WORDS.has(t) || this.aliases.has(t))) continue;
          const surface = window.join(' ');
          const record = this.fuzzy(surface, n);
          if (record) found = { kind: record.kind, name: record.name, key: record.key, start: i, end: i + n, surface, via: 'fuzzy' };
        }
      }
      if (found) {
        mentions.push(found);
        i = found.end;
      } else i++;
    }
    return mentions;
  }

  private fuzzy(token: string, tokenCount: number): AliasRecord | undefined {
    // Latin words only: one edit in a four-character Chinese or Japanese word is another word.
    if (token.length < 4 || !/^[a-z ]+$/.test(token)) return undefined;
    const limit = token.length >= 8 ? 2 : 1;
    let best: string | undefined;
    let bestDistance = limit + 1;
    for (const candidate of this.fuzzyCandidates.get(tokenCount) ?? []) {
      if (Math.abs(candidate.length - token.length) > limit) continue;
      const d = distance(token, candidate);
      // Ties go to the alphabetically first candidate, so linking never depends on map order.
      if (d < bestDistance || (d === bestDistance && best !== undefined && candidate < best)) {
        best = candidate;
        bestDistance = d;
      }
    }
    return best === undefined ? undefined : this.aliases.get(best);
  }

  /**
   * The product type an item is: from its category path's leaf, else the product its title names
   * (the first one; for head-final knowledge the last one of the naming segment, then of the whole
   * title, then of the description).
   */
  itemProduct(item: Pick<Item, 'category' | 'title' | 'description'>): string | undefined {
    for (let i = item.category.length - 1; i >= 0; i--) {
      const byPath = this.byDisplay.get(normalise(item.category[i] ?? ''));
      if (byPath) return byPath;
      const linked = this.aliases.get(normalise(item.category[i] ?? ''));
      if (linked?.kind === 'product') return linked.name;
    }
    if (this.knowledge.headFinal) return this.productNamed(item.title) ?? (item.description ? this.productNamed(item.description) : undefined);
    const mentions = this.link(item.title, { fuzzy: false });
    return mentions.find((m) => m.kind === 'product')?.name ?? this.modelType(mentions.find((m) => m.kind === 'model')?.name);
  }

  /** Head-final naming: the last product mentioned in the naming segment ("usb fan for laptop" -> fan), else in the text. */
  productNamed(text: string, options: { fuzzy?: boolean } = { fuzzy: false }): string | undefined {
    const last = (t: string) => this.link(t, options).filter((m) => m.kind === 'product').at(-1)?.name;
    return last(namingSegment(text)) ?? last(text);
  }

  modelType(model: string | undefined): string | undefined {
    return model === undefined ? undefined : this.knowledge.models.find((m) => m.name === model)?.type;
  }

  needType(phrase: string): string | undefined {
    return this.knowledge.needs.find((n) => n.phrase === phrase)?.type;
  }

  isAccessoryOf(accessory: string, main: string): boolean {
    return this.accessoryOf.get(accessory)?.includes(main) ?? false;
  }

  /** The types an accessory type serves. */
  mainsOf(accessory: string): string[] {
    return [...(this.accessoryOf.get(accessory) ?? [])];
  }

  /** [parent type..., group, department]: the is-a chain above a type. */
  ancestors(type: string): string[] {
    const chain: string[] = [];
    let current = this.types.get(type);
    while (current?.parent !== undefined && !chain.includes(current.parent)) {
      chain.push(current.parent);
      current = this.types.get(current.parent);
    }
    const t = this.types.get(type);
    if (t) chain.push(t.group, t.department);
    return chain;
  }

  /** How the item's product relates to the query's, with the KG path that shows it. */
  relate(queryType: string | undefined, itemType: string | undefined): { link: Link; relation: CategoryRelation; path: string[] } {
    const result = (link: Link, p: string[]) => ({ link, relation: LINK_RELATION[link], path: p });
    if (queryType === undefined || itemType === undefined || !this.types.has(queryType) || !this.types.has(itemType)) return result('unknown', []);
    if (queryType === itemType) return result('same', [itemType]);
    const up = (from: string, to: string) => {
      const chain = this.ancestors(from);
      return [from, ...chain.slice(0, chain.indexOf(to) + 1).flatMap((node) => ['is-a', node])];
    };
    const itemAncestors = this.ancestors(itemType);
    const queryAncestors = this.ancestors(queryType);
    const q = this.types.get(queryType) as ProductType;
    const it = this.types.get(itemType) as ProductType;
    if (itemAncestors.slice(0, -2).includes(queryType)) return result('subtype', up(itemType, queryType));
    if (queryAncestors.slice(0, -2).includes(itemType)) return result('broader', up(queryType, itemType));
    if (this.isAccessoryOf(itemType, queryType)) return result('accessory', [itemType, 'accessory-of', queryType]);
    if (this.isAccessoryOf(queryType, itemType)) return result('main', [queryType, 'accessory-of', itemType]);
    if (this.pairs.complement.has(`${itemType}|${queryType}`)) return result('complement', [itemType, 'complement-of', queryType]);
    if (this.pairs.substitute.has(`${itemType}|${queryType}`)) return result('substitute', [itemType, 'substitute-of', queryType]);
    const common = itemAncestors.slice(0, -1).find((a) => queryAncestors.includes(a));
    if (common !== undefined) return result('sibling', [...up(itemType, common), 'parent-of', queryType]);
    if (it.department === q.department) return result('department', [itemType, 'is-a', it.group, 'is-a', it.department, 'parent-of', q.group, 'parent-of', queryType]);
    return result('none', [itemType, 'is-a', it.department, 'not', q.department]);
  }

  /** Triples that mention `entity` as subject or object. */
  factsAbout(entity: string): Triple[] {
    return [...(this.bySubject.get(entity) ?? []), ...(this.byObject.get(entity) ?? [])];
  }
}

function push<V>(map: Map<string, V[]>, key: string, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/** Triples stated by the knowledge files. */
export function knowledgeTriples(knowledge: Knowledge): Triple[] {
  const triples: Triple[] = [];
  const add = (s: string, p: Predicate, o: string) => triples.push({ s, p, o, source: 'knowledge' });
  const groups = new Set<string>();
  for (const t of knowledge.types) {
    add(t.name, 'is-a', t.parent ?? t.group);
    if (!groups.has(t.group)) {
      groups.add(t.group);
      add(t.group, 'is-a', t.department);
    }
  }
  for (const a of knowledge.productAliases) add(a.alias, 'synonym-of', a.canonical);
  for (const a of knowledge.valueAliases) add(a.alias, 'synonym-of', a.canonical);
  for (const b of knowledge.brands) for (const t of b.makes) add(b.name, 'brand-of', t);
  for (const m of knowledge.models) {
    add(m.name, 'model-of', m.type);
    add(m.brand, 'brand-of', m.name);
  }
  for (const r of knowledge.relations.accessory) add(r.accessory, 'accessory-of', r.of);
  for (const [a, b] of knowledge.relations.complement) add(a, 'complement-of', b);
  for (const [a, b] of knowledge.relations.substitute) add(a, 'substitute-of', b);
  for (const n of knowledge.needs) add(n.type, 'meets-need', n.phrase);
  return triples;
}

/**
 * Triples the catalog shows: which values each type really comes in (attribute-of) and which
 * models an accessory type fits (compatible-with). Brands are already known from brands.yaml;
 * a brand seen on an item but not listed there is added as brand-of.
 */
export function catalogTriples(knowledge: Knowledge, graph: KnowledgeGraph, catalog: readonly Item[]): Triple[] {
  const seen = new Set<string>();
  const known = new Set(knowledge.brands.flatMap((b) => b.makes.map((t) => `${b.name}|${t}`)));
  const triples: Triple[] = [];
  const add = (s: string, p: Predicate, o: string) => {
    const key = `${s}|${p}|${o}`;
    if (seen.has(key)) return;
    seen.add(key);
    triples.push({ s, p, o, source: 'catalog' });
  };
  for (const item of catalog) {
    const type = graph.itemProduct(item);
    if (type === undefined) continue;
    for (const [key, value] of Object.entries(item.attributes).sort()) {
      if (key === 'brand') {
        if (!known.has(`${value}|${type}`)) add(value, 'brand-of', type);
      } else if (key === 'compatibility') add(type, 'compatible-with', value);
      else if (key !== 'model') add(value, 'attribute-of', type);
    }
  }
  return triples;
}

export function buildKnowledgeGraph(knowledge: Knowledge, catalog: readonly Item[] = []): KnowledgeGraph {
  const base = knowledgeTriples(knowledge);
  const withoutCatalog = new KnowledgeGraph(knowledge, base);
  return new KnowledgeGraph(knowledge, [...base, ...catalogTriples(knowledge, withoutCatalog, catalog)]);
}

export async function writeKnowledgeGraph(dir: string, graph: KnowledgeGraph): Promise<Record<string, number>> {
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, 'knowledge.json'), JSON.stringify(graph.knowledge));
  await writeJsonl(path.join(dir, 'triples.jsonl'), graph.triples);
  await writeJsonl(path.join(dir, 'aliases.jsonl'), [...graph.aliases.values()].sort((a, b) => a.alias.localeCompare(b.alias)));
  const stats: Record<string, number> = { triples: graph.triples.length, aliases: graph.aliases.size, types: graph.types.size };
  for (const t of graph.triples) stats[`triples.${t.p}`] = (stats[`triples.${t.p}`] ?? 0) + 1;
  stats['triples.catalog'] = graph.triples.filter((t) => t.source === 'catalog').length;
  for (const a of graph.aliases.values()) stats[`aliases.${a.via}`] = (stats[`aliases.${a.via}`] ?? 0) + 1;
  await fs.writeFile(path.join(dir, 'stats.json'), `${JSON.stringify(stats, null, 2)}\n`);
  return stats;
}

/** Reads a 'kg' artifact folder back into a graph (the alias index is rebuilt from the knowledge). */
export async function loadKnowledgeGraph(dir: string): Promise<KnowledgeGraph> {
  const knowledgeFile = path.join(dir, 'knowledge.json');
  if (!existsSync(knowledgeFile)) throw new Error(`${dir} is not a knowledge-graph artifact: knowledge.json is missing`);
  const knowledge = JSON.parse(await fs.readFile(knowledgeFile, 'utf8')) as Knowledge;
  const triples = await readJsonl<Triple>(path.join(dir, 'triples.jsonl'));
  return new KnowledgeGraph(knowledge, triples);
}
