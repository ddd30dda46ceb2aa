/**
 * The built-in world: a seeded generator of a product catalog, of queries by intent, and of graded
 * query–item pairs. Gold grades, fired rules, capabilities and difficulty all come from
 * `analyzePair` (analysis.ts), and every generated query must parse back to the intent it was
 * written for; those that do not are counted in the stats and dropped, so the gold always says what
 * the generator meant.
 */
import { z } from 'zod';
import type { Rng } from '../../../pipeline/api.ts';
import { analyzeParsed, parseQuery, type PairAnalysis, type QueryParse } from './analysis.ts';
import type { ProductType } from './knowledge.ts';
import type { KnowledgeGraph } from './kg.ts';
import { queryLogParamsSchema } from './query-log.ts';
import { splitByQuery, splitFractionsSchema } from './split.ts';
import { titleCase } from './text.ts';
import { GRADES, type Grade, type Item, type RelevanceExample, type Split } from './types.ts';

export const QUERY_INTENTS = [
  'plain',
  'brand',
  'attribute',
  'synonym',
  'implicit',
  'negation',
  'compatibility',
  'accessory',
  'longtail',
  'misspelling',
] as const;
export type QueryIntent = (typeof QUERY_INTENTS)[number];

export const worldParamsSchema = z.strictObject({
  queries: z.number().int().min(1).default(400).describe('Queries to generate (each with `candidates` items).'),
  candidates: z.number().int().min(1).max(40).default(8).describe('Items graded per query, balanced over L1–L4 where the catalog allows.'),
  itemsPerType: z.number().int().min(1).default(6).describe('Catalog items generated per product type.'),
  missingRate: z.number().min(0).max(1).default(0.25).describe('Chance that an item leaves an attribute unstated (gives "unknown" constraints).'),
  visualRate: z.number().min(0).max(1).default(0.5).describe('Chance that a visual attribute (colour, pattern, style) is stated only in the image caption.'),
  intents: z
    .array(z.enum(QUERY_INTENTS))
    .min(1)
    .default([...QUERY_INTENTS])
    .describe('Query intents to draw from, uniformly.'),
  split: splitFractionsSchema,
  queryLog: queryLogParamsSchema,
});
export type WorldParams = z.output<typeof worldParamsSchema>;

export interface WorldStats {
  catalog: number;
  queries: number;
  examples: number;
  bySplit: Record<Split, { queries: number; examples: number; grades: Record<Grade, number> }>;
  grades: Record<Grade, number>;
  intents: Record<string, number>;
  capabilities: Record<string, number>;
  difficulty: Record<string, number>;
  rules: Record<string, number>;
  /** Generated queries dropped because they did not parse back to their intent, by intent. */
  rejectedQueries: Record<string, number>;
  /** Generated queries dropped because the same text was already generated. */
  duplicateQueries: number;
}

export interface World {
  catalog: Item[];
  splits: Record<Split, RelevanceExample[]>;
  stats: WorldStats;
}

/** Value keys a shopper states in words before or after the product ("for men"). */
const AFTER_PRODUCT = new Set(['gender', 'age group']);
/** Keys a query never constrains directly (they come with a model or an accessory). */
const NOT_QUERIED = new Set(['brand', 'model', 'compatibility']);

function valueText(key: string, value: string): string {
  if (key === 'gender' && value !== 'unisex') return `${titleCase(value)}'s`;
  if (key === 'model' || key === 'compatibility') return titleCase(value).replace(/(\d)([a-z])/g, (_, d: string, c: string) => d + c.toUpperCase());
  if (key === 'brand') return titleCase(value);
  return titleCase(value);
}

export function generateCatalog(kg: KnowledgeGraph, params: WorldParams, rng: Rng): Item[] {
  const catalog: Item[] = [];
  const visualKeys = new Set(kg.knowledge.dimensions.filter((d) => d.visual).map((d) => d.key));
  for (const type of kg.knowledge.types) {
    if (type.abstract) continue;
    for (let n = 0; n < params.itemsPerType; n++) {
      const values: Record<string, string> = {};
      for (const key of type.attributes) {
        const options = type.values[key] ?? [];
        if (options.length > 0) values[key] = rng.pick(options);
      }
      // A phone's model decides its brand.
      if (values.model !== undefined) {
        const model = kg.knowledge.models.find((m) => m.name === values.model);
        if (model) values.brand = model.brand;
      }
      const attributes: Record<string, string> = {};
      const captionOnly: Record<string, string> = {};
      for (const [key, value] of Object.entries(values)) {
        if (key !== 'brand' && rng.next() < params.missingRate) continue;
        if (visualKeys.has(key) && rng.next() < params.visualRate) captionOnly[key] = value;
        else attributes[key] = value;
      }
      catalog.push(renderItem(`i${catalog.length}`, type, attributes, captionOnly, rng));
    }
  }
  return catalog;
}

function renderItem(id: string, type: ProductType, attributes: Record<string, string>, captionOnly: Record<string, string>, rng: Rng): Item {
  const titleKeys = Object.keys(attributes).filter((k) => !['brand', 'model', 'compatibility'].includes(k));
  rng.shuffle(titleKeys);
  const inTitle = titleKeys.slice(0, rng.int(3));
  const title = [
    attributes.brand ? valueText('brand', attributes.brand) : '',
    ...inTitle.map((k) => valueText(k, attributes[k] as string)),
    type.display,
    attributes.model ? valueText('model', attributes.model) : '',
    attributes.compatibility ? `for ${valueText('compatibility', attributes.compatibility)}` : '',
  ]
    .filter((s) => s !== '')
    .join(' ');
  const described = Object.keys(attributes).filter((k) => !inTitle.includes(k) && !['brand', 'model', 'compatibility'].includes(k));
  const description = [`${type.display} by ${valueText('brand', attributes.brand ?? 'an independent maker')}.`, ...described.map((k) => `${titleCase(k)}: ${attributes[k]}.`)].join(' ');
  const look = [captionOnly.colour, captionOnly.pattern !== undefined ? `${captionOnly.pattern} pattern` : undefined, captionOnly.style !== undefined ? `${captionOnly.style} look` : undefined]
    .filter((s) => s !== undefined)
    .join(', ');
  const image_caption = look === '' ? `Product photo of the ${type.display.toLowerCase()} on a plain backdrop.` : `Product photo: ${look}.`;
  return { id, title, category: type.path, attributes, description, image_caption };
}

interface QueryPlan {
  intent: QueryIntent;
  text: string;
  expected: Pick<QueryParse, 'product' | 'constraints' | 'negations' | 'intent'>;
}

function composeQuery(product: string, constraints: Record<string, string>, rng: Rng, productText = product): string {
  const before: string[] = [];
  const after: string[] = [];
  for (const [key, value] of Object.entries(constraints)) {
    if (key === 'compatibility') after.push(`for ${value}`);
    else if (AFTER_PRODUCT.has(key)) after.push(`for ${value}`);
    else before.push(value);
  }
  // Brand first, as shoppers type it; the other values in random order.
  const brandFirst = before.filter((v) => v === constraints.brand);
  const rest = rng.shuffle(before.filter((v) => v !== constraints.brand));
  return [...brandFirst, ...rest, productText, ...after].join(' ');
}

const IMPLICIT_TEMPLATES = ['something to {need}', 'need to {need}', 'what do i need to {need}', 'gift to {need}', 'how to {need}', '{need}'];

/** A typo a shopper makes: two neighbouring letters swapped, inside a word of 5+ letters. */
function typo(word: string, rng: Rng): string | undefined {
  if (word.length < 5 || /[^a-z]/.test(word)) return undefined;
  const i = 1 + rng.int(word.length - 3);
  const chars = [...word];
  [chars[i], chars[i + 1]] = [chars[i + 1] as string, chars[i] as string];
  const swapped = chars.join('');
  return swapped === word ? undefined : swapped;
}

function pickConstraints(item: Item, count: number, rng: Rng, kg: KnowledgeGraph, typeName: string): Record<string, string> {
  const type = kg.types.get(typeName) as ProductType;
  const keys = rng.shuffle(type.attributes.filter((k) => !NOT_QUERIED.has(k)));
  const constraints: Record<string, string> = {};
  for (const key of keys.slice(0, count)) {
    // Mostly what the target item has (so an L4 exists), sometimes any value of the type.
    const own = item.attributes[key];
    constraints[key] = own !== undefined && rng.next() < 0.7 ? own : rng.pick(type.values[key] ?? [own ?? '']);
  }
  for (const [k, v] of Object.entries(constraints)) if (v === '') delete constraints[k];
  return constraints;
}

function planQuery(intent: QueryIntent, kg: KnowledgeGraph, catalog: readonly Item[], rng: Rng): QueryPlan | undefined {
  const k = kg.knowledge;
  const target = rng.pick(catalog);
  const product = kg.itemProduct(target) as string;
  const type = kg.types.get(product) as ProductType;
  const plan = (text: string, p: string, constraints: Record<string, string> = {}, negations: Record<string, string> = {}, need = ''): QueryPlan => ({
    intent,
    text,
    expected: { product: p, constraints, negations, intent: need },
  });
  switch (intent) {
    case 'plain': {
      // Now and then the broader type ("boots" for hiking boots).
      const name = type.parent !== undefined && rng.next() < 0.3 ? type.parent : product;
      return plan(name, name);
    }
    case 'brand': {
      const brand = target.attributes.brand;
      return brand === undefined ? undefined : plan(`${brand} ${product}`, product, { brand });
    }
    case 'attribute': {
      const constraints = pickConstraints(target, 1 + rng.int(2), rng, kg, product);
      return Object.keys(constraints).length === 0 ? undefined : plan(composeQuery(product, constraints, rng), product, constraints);
    }
    case 'synonym': {
      const aliases = k.productAliases.filter((a) => a.canonical === product && a.kind !== 'misspelling');
      if (aliases.length === 0) return undefined;
      const constraints = rng.next() < 0.5 ? pickConstraints(target, 1, rng, kg, product) : {};
      return plan(composeQuery(product, constraints, rng, rng.pick(aliases).alias), product, constraints);
    }
    case 'implicit': {
      const need = rng.pick(k.needs);
      const template = rng.pick(IMPLICIT_TEMPLATES);
      return plan(template.replace('{need}', need.phrase), need.type, {}, {}, need.phrase);
    }
    case 'negation': {
      const keys = type.attributes.filter((key) => !NOT_QUERIED.has(key) && (type.values[key]?.length ?? 0) >= 2);
      if (keys.length === 0) return undefined;
      const key = rng.pick(keys);
      const excluded = rng.pick(type.values[key] as string[]);
      return plan(`${product} without ${excluded}`, product, {}, { [key]: excluded });
    }
    case 'compatibility': {
      const accessories = k.types.filter((t) => (t.values.compatibility?.length ?? 0) > 0);
      const accessory = rng.pick(accessories);
      const model = rng.pick(accessory.values.compatibility as string[]);
      return plan(`${accessory.name} for ${model}`, accessory.name, { compatibility: model });
    }
    case 'accessory': {
      // A main product whose accessories are the traps among the candidates.
      const mains = k.types.filter((t) => k.relations.accessory.some((r) => r.of === t.name));
      const main = rng.pick(mains);
      const models = k.models.filter((m) => m.type === main.name);
      if (models.length > 0 && rng.next() < 0.5) {
        const model = rng.pick(models).name;
        return plan(model, main.name, { model });
      }
      const brand = rng.pick(main.values.brand ?? []);
      return plan(`${brand} ${main.name}`, main.name, { brand });
    }
    case 'longtail': {
      const constraints = pickConstraints(target, 3, rng, kg, product);
      if (target.attributes.brand !== undefined && rng.next() < 0.6) constraints.brand = target.attributes.brand;
      return Object.keys(constraints).length < 3 ? undefined : plan(composeQuery(product, constraints, rng), product, constraints);
    }
    case 'misspelling': {
      const listed = k.productAliases.filter((a) => a.canonical === product && a.kind === 'misspelling');
      const words = product.split(' ');
      const last = words.at(-1) as string;
      const swapped = typo(last, rng);
      const text = listed.length > 0 && rng.next() < 0.5 ? rng.pick(listed).alias : swapped ? [...words.slice(0, -1), swapped].join(' ') : undefined;
      if (text === undefined) return undefined;
      const constraints = rng.next() < 0.4 ? pickConstraints(target, 1, rng, kg, product) : {};
      return plan(composeQuery(product, constraints, rng, text), product, constraints);
    }
  }
}

function sameParse(parse: QueryParse, expected: QueryPlan['expected']): boolean {
  return (
    parse.product === expected.product &&
    parse.intent === expected.intent &&
    JSON.stringify(sorted(parse.constraints)) === JSON.stringify(sorted(expected.constraints)) &&
    JSON.stringify(sorted(parse.negations)) === JSON.stringify(sorted(expected.negations))
  );
}

function sorted(record: Record<string, string>): [string, string][] {
  return Object.entries(record).sort(([a], [b]) => a.localeCompare(b));
}

/** Items worth grading for a query: its type and every type the graph relates to it, plus random ones. */
function candidatePool(product: string, kg: KnowledgeGraph, byType: Map<string, Item[]>, catalog: readonly Item[], rng: Rng): Item[] {
  const pool = new Set<Item>();
  const department = kg.types.get(product)?.department;
  for (const [type, items] of byType) {
    const link = kg.relate(product, type).link;
    if (link !== 'department' && link !== 'none' && link !== 'unknown') items.forEach((i) => pool.add(i));
  }
  const sameDepartment = catalog.filter((i) => i.category[0] === department);
  for (let n = 0; n < 6 && sameDepartment.length > 0; n++) pool.add(rng.pick(sameDepartment));
  for (let n = 0; n < 6; n++) pool.add(rng.pick(catalog));
  return [...pool];
}

export function generateWorld(kg: KnowledgeGraph, params: WorldParams, rng: Rng, onProgress?: (done: number, total: number) => void): World {
  const catalog = generateCatalog(kg, params, rng.fork('catalog'));
  const byType = new Map<string, Item[]>();
  for (const item of catalog) {
    const type = kg.itemProduct(item) as string;
    byType.set(type, [...(byType.get(type) ?? []), item]);
  }
  const queryRng = rng.fork('queries');
  const stats: WorldStats = {
    catalog: catalog.length,
    queries: 0,
    examples: 0,
    bySplit: {} as WorldStats['bySplit'],
    grades: zeroGrades(),
    intents: {},
    capabilities: {},
    difficulty: {},
    rules: {},
    rejectedQueries: {},
    duplicateQueries: 0,
  };
  const seen = new Set<string>();
  const examples: RelevanceExample[] = [];
  const perGrade = Math.ceil(params.candidates / GRADES.length);
  // Some intents cannot be met by every random target; bounded retries keep a bad config from spinning.
  let attempts = 0;
  while (stats.queries < params.queries && attempts < params.queries * 20) {
    // Cycling by attempt, not by accepted query, moves on from an intent whose phrasings ran out.
    const intent = params.intents[attempts % params.intents.length] as QueryIntent;
    attempts++;
    const planned = planQuery(intent, kg, catalog, queryRng);
    if (!planned) continue;
    const parse = parseQuery(planned.text, kg);
    if (!sameParse(parse, planned.expected)) {
      stats.rejectedQueries[intent] = (stats.rejectedQueries[intent] ?? 0) + 1;
      continue;
    }
    if (seen.has(planned.text)) {
      stats.duplicateQueries++;
      continue;
    }
    seen.add(planned.text);
    const queryId = `q${stats.queries}`;
    stats.queries++;
    stats.intents[intent] = (stats.intents[intent] ?? 0) + 1;

    const graded = candidatePool(parse.product, kg, byType, catalog, queryRng).map((item) => ({ item, analysis: analyzeParsed(parse, item, kg) }));
    const chosen = chooseBalanced(graded, params.candidates, perGrade, stats.grades, queryRng);
    for (const { analysis } of chosen) stats.grades[analysis.grade]++;
    for (const { item, analysis } of chosen) examples.push(toExample(queryId, planned, item, analysis));
    onProgress?.(stats.queries, params.queries);
  }

  const splits = splitByQuery(examples, params.split, rng.fork('split'));
  for (const split of ['train', 'dev', 'test'] as const) {
    const list = splits[split];
    const grades = zeroGrades();
    for (const e of list) grades[e.label]++;
    stats.bySplit[split] = { queries: new Set(list.map((e) => e.meta.queryId)).size, examples: list.length, grades };
  }
  for (const e of examples) {
    stats.examples++;
    for (const c of e.meta.capabilities) stats.capabilities[c] = (stats.capabilities[c] ?? 0) + 1;
    stats.difficulty[e.meta.difficulty] = (stats.difficulty[e.meta.difficulty] ?? 0) + 1;
    for (const r of e.meta.rules) stats.rules[r] = (stats.rules[r] ?? 0) + 1;
  }
  return { catalog, splits, stats };
}

function zeroGrades(): Record<Grade, number> {
  return { L1: 0, L2: 0, L3: 0, L4: 0 };
}

/**
 * Up to `perGrade` items of each grade, then the rest from the grades that are rarest so far in the
 * whole world, so the grade distribution stays near uniform even when a query has few L3 items.
 */
function chooseBalanced<T extends { analysis: PairAnalysis }>(graded: T[], total: number, perGrade: number, soFar: Record<Grade, number>, rng: Rng): T[] {
  const chosen: T[] = [];
  const rest: T[] = [];
  for (const grade of GRADES) {
    const bucket = rng.shuffle(graded.filter((g) => g.analysis.grade === grade));
    chosen.push(...bucket.slice(0, perGrade));
    rest.push(...bucket.slice(perGrade));
  }
  rng.shuffle(chosen);
  while (chosen.length > total) chosen.pop();
  const counts = { ...soFar };
  for (const c of chosen) counts[c.analysis.grade]++;
  rng.shuffle(rest);
  while (chosen.length < total && rest.length > 0) {
    let best = 0;
    for (let i = 1; i < rest.length; i++) if (counts[(rest[i] as T).analysis.grade] < counts[(rest[best] as T).analysis.grade]) best = i;
    const [next] = rest.splice(best, 1) as [T];
    counts[next.analysis.grade]++;
    chosen.push(next);
  }
  return rng.shuffle(chosen);
}

function toExample(queryId: string, plan: QueryPlan, item: Item, analysis: PairAnalysis): RelevanceExample {
  return {
    id: `${queryId}-${item.id}`,
    query: plan.text,
    item,
    label: analysis.grade,
    meta: {
      capabilities: analysis.capabilities,
      difficulty: analysis.difficulty,
      rules: analysis.rules,
      source: 'world',
      queryId,
      intent: plan.intent,
      decidingRule: analysis.decidingRule,
    },
  };
}
