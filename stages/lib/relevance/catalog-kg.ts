/**
 * Knowledge from a user's own catalog (the `kg` stage on an imported dataset). The built-in
 * knowledge files describe the built-in world; an imported catalog (electronics, general
 * merchandise, ...) has its own product types, brands and vocabulary, so they are induced here:
 *
 * - product types: the category path's leaf when items carry a category; otherwise the head noun
 *   phrase of each title's first segment and of each train query (English noun phrases are
 *   head-final: "portable bluetooth speaker" is a speaker), singular and plural folded, kept when
 *   at least `minTypeCount` distinct titles or train queries have it. A two-word head ("phone case")
 *   is a subtype of its last word ("case") when that is a type too.
 * - brands: a title's leading word that recurs in at least `minBrandCount` distinct titles, leads at
 *   least half the titles it occurs in and is no type or attribute value, plus every built-in brand
 *   named in a title;
 * - attribute values: the built-in lexicons (colour, material, size, gender, pack quantity,
 *   capacity, function, ...), which are about language rather than one catalog;
 * - aliases mined from the TRAIN split only (`mineAliases`): a title word that is not in the query
 *   becomes an alias of the query's product type when the pairs showing it are relevant to that
 *   type often enough (score and cut-off documented there). Dev and test labels never feed the graph.
 *
 * The built-in ontology is used only where it matches: its product aliases and relations between
 * types the catalog has, its value lexicons, its brand list where a title names the brand.
 */
import type { AliasEntry, Knowledge, ProductType } from './knowledge.ts';
import { buildKnowledgeGraph, type KnowledgeGraph } from './kg.ts';
import { namingSegment, STOP_WORDS, stem, tokenize } from './text.ts';
import { isRelevant, type Item, type RelevanceExample } from './types.ts';

export interface CatalogKgOptions {
  /** Distinct titles or train queries a head noun phrase needs to become a product type. */
  minTypeCount: number;
  /** Distinct titles a leading word needs to become a brand. */
  minBrandCount: number;
  /** Relevant train pairs an alias needs (its support). */
  aliasMinSupport: number;
  /** Share of the train pairs showing the title word that are relevant to the type (the score). */
  aliasMinScore: number;
  /** Department name of the induced types (the dataset's name). */
  department: string;
}

export interface MinedAlias {
  /** The title word ("ef", from "EF-ZG980"). */
  alias: string;
  /** The product type it stands for ("phone case"). */
  type: string;
  /** Relevant train pairs with the word in the title and the type in the query. */
  support: number;
  /** support / train pairs whose title has the word. */
  score: number;
}

export interface CatalogKnowledge {
  knowledge: Knowledge;
  mined: MinedAlias[];
  /** Counts per fact kind, for the manifest. */
  counts: Record<string, number>;
}

/**
 * A word that can head a product name: letters only, no stop word, 3+ characters in Latin script,
 * 2+ in others (Chinese and Japanese words are short: 鞋 "shoe" is a word, so is ブーツ "boots";
 * one character alone is as often a particle or counter: 用 "for", 個 "pieces").
 */
function headWord(token: string): boolean {
  if (STOP_WORDS.has(token)) return false;
  return /^[a-z]+$/.test(token) ? token.length >= 3 : /^\p{L}{2,}$/u.test(token);
}

/**
 * The head noun phrase of a product name: the last word (singular) of its first segment that is a
 * plain word, with the word before it when that is one too. "Portable Bluetooth Speaker MBS-100"
 * -> ["speaker", "bluetooth speaker"]. Codes and numbers after the head are skipped.
 */
export function headPhrases(text: string): string[] {
  const tokens = tokenize(namingSegment(text));
  let end = tokens.length - 1;
  while (end >= 0 && !headWord(tokens[end] as string)) end--;
  if (end < 0) return [];
  const head = stem(tokens[end] as string);
  const before = tokens[end - 1];
  return before !== undefined && headWord(before) ? [head, `${before} ${head}`] : [head];
}

function countDistinct(texts: Iterable<string>, phrasesOf: (text: string) => string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const text of new Set(texts)) for (const p of new Set(phrasesOf(text))) counts.set(p, (counts.get(p) ?? 0) + 1);
  return counts;
}

/** Every distinct item, by id when it has one, else by title. */
function distinctItems(examples: readonly RelevanceExample[]): Item[] {
  const items = new Map<string, Item>();
  for (const e of examples) items.set(e.item.id ?? e.item.title, e.item);
  return [...items.values()];
}

function productType(name: string, group: string, department: string, parent: string | undefined): ProductType {
  return { name, display: name, department, group, path: [department, group, name], parent, abstract: false, attributes: [], values: {} };
}

/** The values the built-in lexicons know (colour, material, ...), so they never become types or brands. */
function valueNames(builtin: Knowledge): Set<string> {
  return new Set([...builtin.dimensions.flatMap((d) => (d.key === 'brand' || d.key === 'model' || d.key === 'compatibility' ? [] : d.values)), ...builtin.valueAliases.map((a) => a.alias)]);
}

function induceTypes(train: readonly RelevanceExample[], items: readonly Item[], builtin: Knowledge, options: CatalogKgOptions): ProductType[] {
  const values = valueNames(builtin);
  const withCategory = items.filter((i) => i.category.length > 0);
  // Items that carry a category path: its leaf is the type, the level above its group.
  if (withCategory.length >= items.length / 2) {
    const types = new Map<string, ProductType>();
    for (const item of withCategory) {
      const name = tokenize(item.category.at(-1) as string).join(' ');
      const group = tokenize(item.category.at(-2) ?? `${name} products`).join(' ');
      if (name !== '' && !types.has(name)) types.set(name, productType(name, group, options.department, undefined));
    }
    return [...types.values()].sort((a, b) => a.name.localeCompare(b.name));
  }
  const counts = countDistinct(items.map((i) => i.title), headPhrases);
  for (const [phrase, n] of countDistinct(train.map((e) => e.query), headPhrases)) counts.set(phrase, (counts.get(phrase) ?? 0) + n);
  const kept = [...counts].filter(([phrase, n]) => n >= options.minTypeCount && !values.has(phrase)).map(([phrase]) => phrase);
  const names = new Set(kept);
  return kept.sort().map((name) => {
    const head = name.split(' ').at(-1) as string;
    return productType(name, `${head} products`, options.department, head !== name && names.has(head) ? head : undefined);
  });
}

function induceBrands(items: readonly Item[], types: readonly ProductType[], builtin: Knowledge, graph: KnowledgeGraph, options: CatalogKgOptions): Knowledge['brands'] {
  const typeNames = new Set(types.flatMap((t) => [t.name, ...t.name.split(' ')]));
  const values = valueNames(builtin);
  const leading = countDistinct(
    items.map((i) => i.title),
    (title) => {
      const first = tokenize(title)[0];
      return first !== undefined && headWord(first) && !typeNames.has(stem(first)) && !values.has(first) ? [first] : [];
    },
  );
  // A brand leads the titles it is in; an adjective ("portable", "black") leads some and sits inside others.
  const anywhere = countDistinct(
    items.map((i) => i.title),
    (title) => tokenize(title),
  );
  const brands = new Set([...leading].filter(([b, n]) => n >= options.minBrandCount && n >= 0.5 * (anywhere.get(b) ?? n)).map(([b]) => b));
  const builtinNames = new Map(builtin.brands.flatMap((b) => [b.name, ...b.aliases].map((a) => [tokenize(a).join(' '), b.name] as const)));
  for (const item of items) {
    const tokens = tokenize(item.title);
    for (let n = 1; n <= 2; n++) for (let i = 0; i + n <= tokens.length; i++) {
      const name = builtinNames.get(tokens.slice(i, i + n).join(' '));
      if (name !== undefined && !typeNames.has(name)) brands.add(name);
    }
  }
  // What each brand makes: the types of the items whose title names it.
  const makes = new Map<string, Set<string>>([...brands].map((b) => [b, new Set<string>()]));
  for (const item of items) {
    const type = graph.itemProduct(item);
    if (type === undefined) continue;
    const tokens = new Set(tokenize(item.title));
    for (const brand of brands) if (brand.split(' ').every((w) => tokens.has(w))) makes.get(brand)?.add(type);
  }
  return [...brands].sort().map((name) => ({ name, makes: [...(makes.get(name) ?? [])].sort(), aliases: [] }));
}

/**
 * Aliases from the train split's relevant pairs (L3/L4). For a title word w that the query does
 * not contain and a product type T parsed from the query (whose words the title lacks):
 *   support(w, T) = relevant train pairs with w in the title and T in the query,
 *   score(w, T)   = support / train pairs (any grade) with w in the title.
 * w becomes an alias of T when support >= aliasMinSupport and score >= aliasMinScore: most pairs
 * showing w are relevant to a T query, so an item whose title says w is a T (Chorus: "EF-ZG980"
 * titles are phone cases). Words that already name a type, brand or value are left alone; a word
 * that qualifies for two types goes to the higher score (ties: the alphabetically first type).
 */
export function mineAliases(train: readonly RelevanceExample[], graph: KnowledgeGraph, options: Pick<CatalogKgOptions, 'aliasMinSupport' | 'aliasMinScore'>): MinedAlias[] {
  const titleWords = (e: RelevanceExample) => new Set(tokenize(e.item.title).filter((t) => /\p{L}/u.test(t) && t.length >= 2 && !STOP_WORDS.has(t)).map(stem));
  const shown = new Map<string, number>();
  const support = new Map<string, number>();
  for (const e of train) {
    const words = titleWords(e);
    for (const w of words) shown.set(w, (shown.get(w) ?? 0) + 1);
    if (!isRelevant(e.label)) continue;
    const queryWords = new Set(tokenize(e.query).map(stem));
    const type = queryProduct(e.query, graph);
    if (type === undefined || type.split(' ').every((w) => words.has(w))) continue;
    for (const w of words) if (!queryWords.has(w)) support.set(`${w}\u0000${type}`, (support.get(`${w}\u0000${type}`) ?? 0) + 1);
  }
  const best = new Map<string, MinedAlias>();
  for (const [key, n] of support) {
    const [alias, type] = key.split('\u0000') as [string, string];
    const score = n / (shown.get(alias) as number);
    if (n < options.aliasMinSupport || score < options.aliasMinScore || graph.aliases.has(alias)) continue;
    const current = best.get(alias);
    if (!current || score > current.score || (score === current.score && type < current.type)) best.set(alias, { alias, type, support: n, score });
  }
  return [...best.values()].sort((a, b) => a.alias.localeCompare(b.alias));
}

/** The product a query asks for, as the analysis parses it. */
function queryProduct(query: string, graph: KnowledgeGraph): string | undefined {
  const mentions = graph.link(query, { fuzzy: false }).filter((m) => m.kind === 'product');
  return mentions.at(-1)?.name;
}

/**
 * The knowledge bundle for an imported dataset. `train` feeds types (its queries) and mined aliases
 * (its labels); `items` is every item of every split (titles are the catalog, not labels).
 */
export function buildCatalogKnowledge(builtin: Knowledge, train: readonly RelevanceExample[], allExamples: readonly RelevanceExample[], options: CatalogKgOptions): CatalogKnowledge {
  const items = distinctItems(allExamples);
  const types = induceTypes(train, items, builtin, options);
  const typeNames = new Set(types.map((t) => t.name));
  const both = (pair: readonly string[]) => pair.every((t) => typeNames.has(t));
  const base: Knowledge = {
    types,
    dimensions: builtin.dimensions.map((d) => (d.key === 'model' || d.key === 'compatibility' ? { ...d, values: [] } : d)),
    brands: [],
    productAliases: builtin.productAliases.filter((a) => typeNames.has(a.canonical) && !typeNames.has(a.alias)),
    valueAliases: builtin.valueAliases,
    models: [],
    needs: builtin.needs.filter((n) => typeNames.has(n.type)),
    relations: {
      accessory: builtin.relations.accessory.filter((r) => both([r.accessory, r.of])),
      complement: builtin.relations.complement.filter(both),
      substitute: builtin.relations.substitute.filter(both),
    },
    rules: builtin.rules,
    headFinal: true,
  };
  const brands = induceBrands(items, types, builtin, buildKnowledgeGraph(base), options);
  const brandNames = new Set(brands.map((b) => b.name));
  const withBrands: Knowledge = {
    ...base,
    brands,
    dimensions: base.dimensions.map((d) => (d.key === 'brand' ? { ...d, values: brands.map((b) => b.name) } : d)),
    productAliases: base.productAliases.filter((a) => !brandNames.has(a.alias)),
  };
  const mined = mineAliases(train, buildKnowledgeGraph(withBrands), options);
  const minedEntries: AliasEntry[] = mined.map((m) => ({ alias: m.alias, canonical: m.type, kind: 'mined' }));
  const knowledge: Knowledge = { ...withBrands, productAliases: [...withBrands.productAliases, ...minedEntries] };
  const counts = {
    'facts.types': types.length,
    'facts.subtypes': types.filter((t) => t.parent !== undefined).length,
    'facts.brands': brands.length,
    'facts.values': knowledge.dimensions.reduce((n, d) => n + (d.key === 'brand' ? 0 : d.values.length), 0),
    'facts.builtin_product_aliases': withBrands.productAliases.length,
    'facts.mined_aliases': mined.length,
    'facts.builtin_relations': base.relations.accessory.length + base.relations.complement.length + base.relations.substitute.length,
    'catalog.items': items.length,
  };
  return { knowledge, mined, counts };
}
