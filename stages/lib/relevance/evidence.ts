/**
 * Evidence for one query–item pair, as the icl prompt states it and the cot stage checks claims
 * against: which query words the item matches in its title, in its description, only through an
 * alias (a synonym or mined alias linking the word to the item's product or value), and which are
 * missing; each constraint's verdict; how the products were linked; a lexical-match bucket.
 *
 * The same record is rendered into the prompt (`renderEvidence`) and kept beside it
 * (`PromptRecord.evidence`), so the teacher and the student see exactly the same evidence, and a
 * rationale that claims more than it (`unsupportedClaims`) is rejected.
 */
import type { ReasoningSteps } from './completion.ts';
import type { PairAnalysis, QueryParse } from './analysis.ts';
import { bm25Terms } from './bm25.ts';
import { LINK_RELATION, type KnowledgeGraph, type Link } from './kg.ts';
import type { Item } from './types.ts';

export const LEXICAL_BUCKETS = ['none', 'low', 'partial', 'most', 'all'] as const;
export type LexicalBucket = (typeof LEXICAL_BUCKETS)[number];

/**
 * Coverage (the share of the query's IDF weight the item's text has, baseline.ts) in five buckets:
 * none (0), low (< 1/3), partial (< 2/3), most (< 1), all (1). Fixed thirds, not tuned: a bucket
 * is a word the model can copy, and the learned baselines are where cut points are fitted.
 */
export function lexicalBucket(coverage: number): LexicalBucket {
  if (coverage <= 0) return 'none';
  if (coverage >= 1) return 'all';
  return coverage < 1 / 3 ? 'low' : coverage < 2 / 3 ? 'partial' : 'most';
}

export interface PairEvidence {
  queryProduct: string;
  itemProduct: string;
  /** The item words that named its product, and how they linked ("ef (mined)"); '' when none did. */
  itemProductFrom: string;
  link: Link;
  /** Query words (normalised, singular) the item's title, category or attributes contain. */
  title: string[];
  /** Query words found only in the description or image caption. */
  description: string[];
  /** Query words the item lacks but meets through an alias: "notebook=laptop". */
  alias: string[];
  missing: string[];
  /** Constraint key -> match | conflict | unknown, as the analysis judged it. */
  constraints: Record<string, string>;
  /** The item's value for each conflicting key. */
  conflicts: Record<string, string>;
  lexical: LexicalBucket;
}

function itemFieldTerms(item: Item): { title: Set<string>; description: Set<string> } {
  return {
    title: new Set(bm25Terms([item.title, item.category.join(' '), ...Object.values(item.attributes)].join(' '))),
    description: new Set(bm25Terms([item.description ?? '', item.image_caption ?? ''].join(' '))),
  };
}

export function pairEvidence(parse: QueryParse, analysis: PairAnalysis, item: Item, kg: KnowledgeGraph, coverage: number): PairEvidence {
  const fields = itemFieldTerms(item);
  const evidence: PairEvidence = {
    queryProduct: analysis.query.product,
    itemProduct: analysis.item.product,
    itemProductFrom: '',
    link: analysis.category.link,
    title: [],
    description: [],
    alias: [],
    missing: [],
    constraints: { ...analysis.attributes },
    conflicts: {},
    lexical: lexicalBucket(coverage),
  };
  for (const [key, verdict] of Object.entries(analysis.attributes)) if (verdict === 'conflict') evidence.conflicts[key] = analysis.item.attributes[key] ?? '';
  const productMention = [...kg.link(item.title, { fuzzy: false }), ...kg.link(item.description ?? '', { fuzzy: false })].find(
    (m) => m.kind === 'product' && m.name === analysis.item.product,
  );
  if (productMention) evidence.itemProductFrom = `${productMention.surface} (${productMention.via})`;
  // A query word the item lacks is met through an alias when it is part of a mention of the item's
  // own product (or a subtype of it) or of a constraint value the item matches.
  const metByAlias = new Map<string, string>();
  for (const m of parse.mentions) {
    const met =
      (m.kind === 'product' && (m.name === analysis.item.product || analysis.category.link === 'subtype')) ||
      (m.kind !== 'product' && Object.entries(analysis.attributes).some(([key, v]) => v === 'match' && (analysis.query.constraints[key] === m.name)));
    if (!met) continue;
    for (const word of bm25Terms(m.surface)) metByAlias.set(word, m.name);
  }
  for (const word of new Set(bm25Terms(analysisQueryText(parse)))) {
    if (fields.title.has(word)) evidence.title.push(word);
    else if (fields.description.has(word)) evidence.description.push(word);
    else if (metByAlias.has(word)) evidence.alias.push(`${word}=${metByAlias.get(word)}`);
    else evidence.missing.push(word);
  }
  return evidence;
}

/** The query's words as the parse saw them (mentions' surfaces and the unlinked words, in order). */
function analysisQueryText(parse: QueryParse): string {
  const words: [number, string][] = parse.mentions.map((m) => [m.start, m.surface]);
  return [...words.sort((a, b) => a[0] - b[0]).map(([, w]) => w), ...parse.unlinked].join(' ');
}

const list = (items: readonly string[]) => (items.length === 0 ? 'none' : items.join(', '));

export function renderEvidence(e: PairEvidence): string {
  const constraints = Object.keys(e.constraints)
    .sort()
    .map((key) => `${key}: ${e.constraints[key]}${key in e.conflicts ? ` (item: ${e.conflicts[key]})` : ''}`);
  return [
    'Evidence:',
    `- products: query ${e.queryProduct || 'none'}; item ${e.itemProduct || 'none'}${e.itemProductFrom ? ` from ${e.itemProductFrom}` : ''}; link ${e.link}`,
    `- in title: ${list(e.title)}`,
    `- in description only: ${list(e.description)}`,
    `- through an alias only: ${list(e.alias)}`,
    `- missing: ${list(e.missing)}`,
    `- constraints: ${list(constraints)}`,
    `- lexical match: ${e.lexical}`,
  ].join('\n');
}

/**
 * The claims in a rationale's steps that the evidence does not support: a product other than the
 * evidence's, a category relation its link does not give, a constraint verdict other than the
 * evidence's (e.g. "brand: match" where the evidence has the brand missing). Empty when every
 * checked claim is supported.
 */
export function unsupportedClaims(steps: Partial<ReasoningSteps>, e: PairEvidence): string[] {
  const claims: string[] = [];
  if (steps.query && steps.query.product !== e.queryProduct) claims.push(`query product ${steps.query.product || 'none'} (evidence: ${e.queryProduct || 'none'})`);
  if (steps.item && steps.item.product !== e.itemProduct) claims.push(`item product ${steps.item.product || 'none'} (evidence: ${e.itemProduct || 'none'})`);
  if (steps.category && steps.category.relation !== LINK_RELATION[e.link]) claims.push(`category ${steps.category.relation} (evidence link: ${e.link})`);
  for (const [key, verdict] of Object.entries(steps.attributes ?? {})) {
    const supported = e.constraints[key];
    if (supported !== verdict) claims.push(`${key}: ${verdict} (evidence: ${supported ?? 'not a constraint'})`);
  }
  return claims;
}
