/**
 * The relevance analysis: the single source of truth for grades and reasoning steps.
 *
 * `analyzePair(query, item, kg)` parses the query by entity linking against the knowledge graph,
 * reads the item (structured attributes first, then values named in its title, description and image
 * caption), relates the two products through the graph, checks each constraint, and lets the rule
 * engine decide the grade. The world generator grades its gold labels with this same function, so
 * a chain of thought rendered from an analysis (`toReasoningSteps`) always verifies against the gold
 * of a world example, and stepwise rewards can check each step.
 */
import type { ReasoningSteps } from './completion.ts';
import type { CategoryRelation, KnowledgeGraph, Link, Mention } from './kg.ts';
import { applyRules, type Features } from './rules.ts';
import { normalise, STOP_WORDS } from './text.ts';
import type { Capability, Difficulty, Grade, Item } from './types.ts';

export type AttributeVerdict = 'match' | 'conflict' | 'unknown';
export type EvidenceSource = 'attributes' | 'title' | 'description' | 'image_caption';

export interface QueryParse {
  /** The product type asked for, '' when none could be linked. */
  product: string;
  constraints: Record<string, string>;
  /** Attribute values the query excludes ("without leather" -> material: leather). */
  negations: Record<string, string>;
  /** The implicit need the query states ("keep coffee hot"), '' when it names a product. */
  intent: string;
  mentions: Mention[];
  /** Words that linked to nothing (stop words aside). */
  unlinked: string[];
}

export interface ItemView {
  product: string;
  category: string[];
  attributes: Record<string, string>;
  /** Where each attribute value was read. */
  sources: Record<string, EvidenceSource>;
}

export interface PairAnalysis {
  query: Pick<QueryParse, 'product' | 'constraints' | 'negations' | 'intent'>;
  item: Omit<ItemView, 'sources'>;
  /** `path` is the KG path, e.g. ["hiking boots", "is-a", "boots"]. */
  category: { relation: CategoryRelation; link: Link; path: string[] };
  /** One verdict per constrained or negated key. */
  attributes: Record<string, AttributeVerdict>;
  /** Ids of every firing rule, the deciding one first. */
  rules: string[];
  decidingRule: string;
  grade: Grade;
  capabilities: Capability[];
  difficulty: Difficulty;
  features: Features;
}

const NEGATION_FILLERS = new Set(['any', 'a', 'an', 'no']);

export function parseQuery(query: string, kg: KnowledgeGraph): QueryParse {
  const mentions = kg.link(query);
  const tokens = normalise(query).split(' ');
  const negated = new Set<Mention>();
  for (const mention of mentions) {
    let j = mention.start - 1;
    while (j >= 0 && NEGATION_FILLERS.has(tokens[j] as string)) j--;
    if (j >= 0 && tokens[j] === 'without') negated.add(mention);
  }
  const models = mentions.filter((m) => m.kind === 'model');
  const need = mentions.find((m) => m.kind === 'need');
  const named = kg.knowledge.headFinal ? kg.productNamed(query, {}) : mentions.find((m) => m.kind === 'product')?.name;
  const product = named ?? kg.modelType(models[0]?.name) ?? (need ? kg.needType(need.name) : undefined) ?? '';
  const constraints: Record<string, string> = {};
  const negations: Record<string, string> = {};
  for (const m of mentions) {
    const target = negated.has(m) ? negations : constraints;
    if (m.kind === 'value' && m.key !== undefined) target[m.key] ??= m.name;
    else if (m.kind === 'brand') target.brand ??= m.name;
    else if (m.kind === 'model') {
      // A model named with an accessory is what the accessory must fit ("case for iphone 15").
      const type = kg.modelType(m.name);
      const key = type !== undefined && type !== product && kg.isAccessoryOf(product, type) ? 'compatibility' : 'model';
      target[key] ??= m.name;
    }
  }
  const covered = new Set(mentions.flatMap((m) => Array.from({ length: m.end - m.start }, (_, k) => m.start + k)));
  const unlinked = tokens.filter((t, i) => t !== '' && !covered.has(i) && !STOP_WORDS.has(t));
  return { product, constraints, negations, intent: need?.name ?? '', mentions, unlinked };
}

const itemViews = new WeakMap<KnowledgeGraph, WeakMap<Item, ItemView>>();

/** The item as the analysis sees it; cached per graph and item object (items are reused across queries). */
export function describeItem(item: Item, kg: KnowledgeGraph): ItemView {
  let cache = itemViews.get(kg);
  if (!cache) itemViews.set(kg, (cache = new WeakMap()));
  const cached = cache.get(item);
  if (cached) return cached;
  const product = kg.itemProduct(item) ?? '';
  const attributes: Record<string, string> = {};
  const sources: Record<string, EvidenceSource> = {};
  for (const [rawKey, rawValue] of Object.entries(item.attributes)) {
    const key = normalise(rawKey);
    const alias = kg.aliases.get(normalise(rawValue));
    // Structured values are canonicalised when they are a known name of a value of this key.
    attributes[key] = alias && (alias.key === key || (alias.kind === 'brand' && key === 'brand') || (alias.kind === 'model' && (key === 'model' || key === 'compatibility'))) ? alias.name : normalise(rawValue);
    sources[key] = 'attributes';
  }
  const fields: [EvidenceSource, string | undefined][] = [
    ['title', item.title],
    ['description', item.description],
    ['image_caption', item.image_caption],
  ];
  for (const [source, text] of fields) {
    if (!text) continue;
    for (const m of kg.link(text, { fuzzy: false })) {
      let key: string | undefined;
      if (m.kind === 'value') key = m.key;
      else if (m.kind === 'brand') key = 'brand';
      else if (m.kind === 'model') key = kg.modelType(m.name) === product ? 'model' : 'compatibility';
      if (key === undefined || key in attributes) continue;
      attributes[key] = m.name;
      sources[key] = source;
    }
  }
  const view = { product, category: item.category, attributes, sources };
  cache.set(item, view);
  return view;
}

function verdict(kg: KnowledgeGraph, key: string, wanted: string, have: string | undefined): AttributeVerdict {
  if (have === undefined) return 'unknown';
  if (have === wanted) return 'match';
  const dimension = kg.knowledge.dimensions.find((d) => d.key === key);
  return dimension?.satisfies[have]?.includes(wanted) ? 'match' : 'conflict';
}

const CORE_LINKS: readonly Link[] = ['same', 'subtype', 'broader', 'substitute'];

export function analyzeParsed(parse: QueryParse, item: Item, kg: KnowledgeGraph): PairAnalysis {
  const view = describeItem(item, kg);
  const relation = kg.relate(parse.product || undefined, view.product || undefined);
  const attributes: Record<string, AttributeVerdict> = {};
  const features: Features = { category: relation.relation, link: relation.link, core: CORE_LINKS.includes(relation.link) };
  for (const d of kg.knowledge.dimensions) features[`attr.${d.key}`] = 'absent';
  let hard = 0;
  let soft = 0;
  let unknowns = 0;
  for (const [key, wanted] of Object.entries(parse.constraints)) {
    const v = verdict(kg, key, wanted, view.attributes[key]);
    attributes[key] = v;
    features[`attr.${key}`] = v;
    if (v === 'unknown') unknowns++;
    if (v === 'conflict') {
      if (kg.knowledge.dimensions.find((d) => d.key === key)?.hard) hard++;
      else soft++;
    }
  }
  let negation: 'none' | 'clear' | 'violated' | 'unknown' = 'none';
  for (const [key, excluded] of Object.entries(parse.negations)) {
    const have = view.attributes[key];
    const v: AttributeVerdict = have === undefined ? 'unknown' : have === excluded ? 'conflict' : 'match';
    attributes[key] = v;
    if (v === 'unknown') unknowns++;
    if (v === 'conflict') negation = 'violated';
    else if (v === 'unknown' && negation !== 'violated') negation = 'unknown';
    else if (negation === 'none') negation = 'clear';
  }
  Object.assign(features, { negation, hard_conflicts: hard, soft_conflicts: soft, conflicts: hard + soft + (negation === 'violated' ? 1 : 0), unknowns });

  const { fired, deciding } = applyRules(kg.knowledge.rules, features);

  const capabilities: Capability[] = [];
  const knowledgeLink = ['broader', 'substitute', 'accessory', 'main', 'complement'].includes(relation.link);
  const aliasUsed = parse.mentions.some((m) => m.via !== 'name' && m.via !== 'inflection');
  if (aliasUsed || parse.intent !== '' || knowledgeLink || parse.mentions.some((m) => m.kind === 'model')) capabilities.push('knowledge');
  const constraintCount = Object.keys(parse.constraints).length + Object.keys(parse.negations).length;
  if (constraintCount >= 2 || Object.keys(parse.negations).length > 0 || 'compatibility' in parse.constraints) capabilities.push('reasoning');
  if (Object.keys(attributes).some((key) => view.sources[key] === 'image_caption')) capabilities.push('visual');
  if (!deciding.general) capabilities.push('rule');
  const typo = parse.mentions.some((m) => m.via === 'misspelling' || m.via === 'fuzzy');
  const points = capabilities.filter((c) => c !== 'rule').length + (typo ? 1 : 0) + (constraintCount >= 3 ? 1 : 0);
  const difficulty: Difficulty = points === 0 ? 'easy' : points === 1 ? 'medium' : 'hard';

  return {
    query: { product: parse.product, constraints: parse.constraints, negations: parse.negations, intent: parse.intent },
    item: { product: view.product, category: view.category, attributes: view.attributes },
    category: { relation: relation.relation, link: relation.link, path: relation.path },
    attributes,
    rules: fired.map((r) => r.id),
    decidingRule: deciding.id,
    grade: deciding.grade,
    capabilities,
    difficulty,
    features,
  };
}

export function analyzePair(query: string, item: Item, kg: KnowledgeGraph): PairAnalysis {
  return analyzeParsed(parseQuery(query, kg), item, kg);
}

/** The analysis as the completion format's five steps (negations written `key=!value`). */
export function toReasoningSteps(analysis: PairAnalysis): ReasoningSteps {
  const constraints = { ...analysis.query.constraints };
  for (const [key, value] of Object.entries(analysis.query.negations)) constraints[key] = `!${value}`;
  return {
    query: { product: analysis.query.product, constraints, intent: analysis.query.intent },
    item: { product: analysis.item.product, category: analysis.item.category, attributes: analysis.item.attributes },
    category: { relation: analysis.category.relation, path: analysis.category.path.join(' ') },
    attributes: analysis.attributes,
    rules: analysis.rules,
  };
}
