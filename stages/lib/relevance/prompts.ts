/**
 * In-context prompts (the `icl` stage), after LORE: each example is linked to the knowledge graph,
 * the k most relevant facts are retrieved, few-shot exemplars are chosen from the train split by
 * BM25, and chat messages are rendered whose system prompt states the grading guideline and the
 * business rules. A token budget per prompt drops the least relevant facts first, then exemplars,
 * then the item description.
 *
 * Artifact layout (kind 'prompts'): train.jsonl, dev.jsonl, test.jsonl of `PromptRecord`, stats.json.
 */
import { z } from 'zod';
import { analyzePair, analyzeParsed, parseQuery, toReasoningSteps, type PairAnalysis } from './analysis.ts';
import type { ReasoningSteps } from './completion.ts';
import { queryCoverage } from './baseline.ts';
import { Bm25, bm25Terms } from './bm25.ts';
import { pairEvidence, renderEvidence, type PairEvidence } from './evidence.ts';
import type { KnowledgeGraph, Triple } from './kg.ts';
import { normalise } from './text.ts';
import type { RelevanceExample } from './types.ts';

/** A chat turn, as OpenAI-compatible endpoints and chat templates take it. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}
export interface PromptRecord {
  id: string;
  messages: ChatMessage[];
  example: RelevanceExample;
  facts: string[];
  /** The pair's evidence as the prompt states it (icl with `evidence: true`). */
  evidence?: PairEvidence;
}

export const promptParamsSchema = z.strictObject({
  facts: z.number().int().min(0).default(8).describe('Knowledge-graph facts retrieved per prompt (before the budget).'),
  shots: z.number().int().min(0).default(2).describe('Few-shot exemplars from the train split, chosen by BM25.'),
  maxTokens: z
    .number()
    .int()
    .min(64)
    .default(1536)
    .describe('Token budget per prompt (system + user), counted as words, numbers and punctuation marks; facts go first, then exemplars, then the description.'),
  rules: z.enum(['all', 'none']).default('all').describe('State every business rule in the system prompt, or none (for small models with short contexts).'),
  evidence: z
    .boolean()
    .default(false)
    .describe('State the pair\'s evidence after the item: query words matched in the title, the description, only through an alias, missing; constraint verdicts; the product link; a lexical-match bucket (evidence.ts). Never dropped by the budget.'),
});
export type PromptParams = z.output<typeof promptParamsSchema>;

/**
 * A tokenizer-free token count: words, digits runs and punctuation marks. BPE tokenizers split rare
 * words further, so real counts run higher; the icl stage has no tokenizer (it comes with the
 * model later), and the budget only has to be consistent.
 */
export function countTokens(text: string): number {
  return text.match(/[A-Za-z]+|\d+|[^\sA-Za-z\d]/g)?.length ?? 0;
}

const GUIDELINE = [
  'You judge how relevant a product is to a shopping query on a four-grade scale:',
  '- L4 Excellent: the core product and every stated constraint match.',
  '- L3 Related: the core product matches with a minor or unstated deviation, or it is a close substitute.',
  '- L2 Mismatch: same domain, but the core product or a hard constraint conflicts (an accessory for the product, a wrong brand, gender, size or compatibility).',
  '- L1 Irrelevant: nothing to do with the query.',
].join('\n');

const FORMAT = [
  'Reason in five steps, then answer:',
  '<think>',
  'query: <core product>; constraints: <key=value, ...>; intent: <need or none>',
  'item: <core product>; category: <path>; attributes: <key=value, ...>',
  'category: <match|related|mismatch> (<knowledge-graph path>)',
  'attributes: <key: match|conflict|unknown, ...>',
  'rules: <rule ids that fire, or none>',
  '</think>',
  '<answer>L1|L2|L3|L4</answer>',
].join('\n');

export function systemPrompt(kg: KnowledgeGraph, params: PromptParams): string {
  const parts = [GUIDELINE];
  if (params.rules === 'all') {
    const rules = [...kg.knowledge.rules].sort((a, b) => b.priority - a.priority || a.id.localeCompare(b.id));
    parts.push(['Business rules (when several apply, the one listed first decides):', ...rules.map((r) => `- ${r.id} (${r.grade}): ${r.sentence}`)].join('\n'));
  }
  parts.push(FORMAT);
  return parts.join('\n\n');
}

export function renderFact(triple: Pick<Triple, 's' | 'p' | 'o'>): string {
  return `${triple.s} ${triple.p} ${triple.o}`;
}

/**
 * The facts about a pair, most relevant first: the edges on the path that relates the two products
 * and any direct edge between them; then what explains the query's own words (the facts that tie
 * each brand, model or value it names to the queried product, the need it states, the synonyms it
 * used); then the queried product's is-a chain up to its department (what a mismatch is judged
 * against); then other facts about the queried product, the constrained values, the item's product,
 * and the is-a chain above them. Ties break on the fact's text.
 *
 * Why this order: prompts carry a handful of facts, and a judge can only copy what the prompt
 * states. With the query's mentions ranked like any fact about the product, "philips razor" got
 * four facts about razors and none saying that philips is a brand of razors (alphabetical ties).
 */
export function rankFacts(analysis: PairAnalysis, queryAliases: readonly string[], kg: KnowledgeGraph): string[] {
  const scores = new Map<string, number>();
  const offer = (triple: Triple, score: number) => {
    const text = renderFact(triple);
    const adjusted = score - (triple.source === 'catalog' ? 5 : 0);
    if ((scores.get(text) ?? -Infinity) < adjusted) scores.set(text, adjusted);
  };
  const path = analysis.category.path;
  const onPath = new Set<string>();
  for (let i = 0; i + 2 < path.length; i += 2) onPath.add(`${path[i]}|${path[i + 1]}|${path[i + 2]}`);
  const q = analysis.query.product;
  const it = analysis.item.product;
  const intent = analysis.query.intent;
  const values = new Set([...Object.values(analysis.query.constraints), ...Object.values(analysis.query.negations)]);
  const queryAncestors = q ? kg.ancestors(q) : [];
  const queryChain = new Set(q ? [q, ...queryAncestors] : []);
  const ancestors = new Set([...queryAncestors, ...(it ? kg.ancestors(it) : [])]);
  const entities = new Set([q, it, intent, ...values, ...queryAliases, ...ancestors].filter((e) => e !== ''));
  for (const entity of entities) {
    for (const t of kg.factsAbout(entity)) {
      const aboutQuery = t.s === q || t.o === q;
      const namesValue = values.has(t.s) || values.has(t.o);
      if (onPath.has(`${t.s}|${t.p}|${t.o}`)) offer(t, 100);
      else if ((t.s === q && t.o === it) || (t.s === it && t.o === q)) offer(t, 90);
      else if (namesValue && t.p !== 'synonym-of' && (aboutQuery || t.s === it || t.o === it)) offer(t, 85);
      else if (intent !== '' && t.p === 'meets-need' && t.o === intent) offer(t, 85);
      else if (t.p === 'synonym-of' && queryAliases.includes(t.s)) offer(t, 80);
      else if (t.p === 'is-a' && queryChain.has(t.s)) offer(t, 60);
      else if (aboutQuery) offer(t, t.p === 'synonym-of' ? 20 : 50);
      else if (namesValue) offer(t, t.p === 'synonym-of' ? 15 : 45);
      else if (t.s === it || t.o === it) offer(t, t.p === 'synonym-of' ? 15 : 40);
      else if (ancestors.has(t.s) && t.p === 'is-a') offer(t, 10);
    }
  }
  return [...scores.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([text]) => text);
}

function itemText(example: Pick<RelevanceExample, 'item'>, withDescription: boolean): string {
  const { item } = example;
  const lines = [`Item title: ${item.title}`];
  if (item.category.length > 0) lines.push(`Category: ${item.category.join(' > ')}`);
  const attributes = Object.entries(item.attributes);
  if (attributes.length > 0) lines.push(`Attributes: ${attributes.map(([k, v]) => `${k}=${v}`).join(', ')}`);
  if (withDescription && item.description) lines.push(`Description: ${item.description}`);
  if (item.image_caption) lines.push(`Image: ${item.image_caption}`);
  return lines.join('\n');
}

function exemplarText(example: RelevanceExample): string {
  return `Query: ${example.query}\nItem title: ${example.item.title}\nGrade: ${example.label}`;
}

export interface PromptStats {
  prompts: number;
  meanTokens: number;
  maxTokens: number;
  meanFacts: number;
  factsDropped: number;
  shotsDropped: number;
  descriptionsDropped: number;
  /** Prompts still over the budget with no facts, exemplars or description left. */
  overBudget: number;
}

export class PromptBuilder {
  private readonly train: readonly RelevanceExample[];
  private readonly index: Bm25;
  private readonly system: string;
  private readonly systemTokens: number;
  private readonly coverage: (example: Pick<RelevanceExample, 'query' | 'item'>) => number;
  readonly stats: PromptStats = { prompts: 0, meanTokens: 0, maxTokens: 0, meanFacts: 0, factsDropped: 0, shotsDropped: 0, descriptionsDropped: 0, overBudget: 0 };

  /** Exemplars come from `train` only, so no dev or test example can ever appear in a prompt. */
  constructor(
    private readonly kg: KnowledgeGraph,
    train: readonly RelevanceExample[],
    private readonly params: PromptParams,
  ) {
    this.train = train;
    this.index = new Bm25(train.map((e) => bm25Terms(`${e.query} ${e.item.title}`)));
    this.system = systemPrompt(kg, params);
    this.systemTokens = countTokens(this.system);
    this.coverage = queryCoverage(train);
  }

  /** Works for unlabelled pairs too (offline labelling, serving): only id, query and item are read. */
  build<E extends Pick<RelevanceExample, 'id' | 'query' | 'item'> = RelevanceExample>(example: E): Omit<PromptRecord, 'example'> & { example: E } {
    const parse = parseQuery(example.query, this.kg);
    const analysis = analyzeParsed(parse, example.item, this.kg);
    const evidence = this.params.evidence ? pairEvidence(parse, analysis, example.item, this.kg, this.coverage(example)) : undefined;
    const queryAliases = analysisAliases(example.query, this.kg);
    const facts = rankFacts(analysis, queryAliases, this.kg).slice(0, this.params.facts);
    const ownQuery = normalise(example.query);
    const otherQuery = (i: number) => normalise((this.train[i] as RelevanceExample).query) !== ownQuery;
    const chosen = this.index.top(bm25Terms(`${example.query} ${example.item.title}`), this.params.shots, otherQuery).map(({ index }) => index);
    // When too few train pairs share a word, the first train pairs of other queries fill in, so every
    // prompt has the same shape.
    for (let i = 0; chosen.length < this.params.shots && i < this.train.length; i++) if (otherQuery(i) && !chosen.includes(i)) chosen.push(i);
    const shots = chosen.map((index) => exemplarText(this.train[index] as RelevanceExample));

    let withDescription = true;
    const render = () => {
      const parts: string[] = [];
      if (facts.length > 0) parts.push(`Knowledge:\n${facts.map((f) => `- ${f}`).join('\n')}`);
      if (shots.length > 0) parts.push(`Graded examples:\n${shots.join('\n\n')}`);
      parts.push(`Judge this pair.\nQuery: ${example.query}\n${itemText(example, withDescription)}`);
      if (evidence) parts.push(renderEvidence(evidence));
      return parts.join('\n\n');
    };
    let user = render();
    let tokens = this.systemTokens + countTokens(user);
    // Least relevant first: facts are ranked, exemplars are ranked; the description goes last.
    while (tokens > this.params.maxTokens && (facts.length > 0 || shots.length > 0 || withDescription)) {
      if (facts.length > 0) {
        facts.pop();
        this.stats.factsDropped++;
      } else if (shots.length > 0) {
        shots.pop();
        this.stats.shotsDropped++;
      } else {
        withDescription = false;
        this.stats.descriptionsDropped++;
      }
      user = render();
      tokens = this.systemTokens + countTokens(user);
    }
    if (tokens > this.params.maxTokens) this.stats.overBudget++;
    const s = this.stats;
    s.meanTokens = (s.meanTokens * s.prompts + tokens) / (s.prompts + 1);
    s.meanFacts = (s.meanFacts * s.prompts + facts.length) / (s.prompts + 1);
    s.maxTokens = Math.max(s.maxTokens, tokens);
    s.prompts++;
    return {
      id: example.id,
      messages: [
        { role: 'system', content: this.system },
        { role: 'user', content: user },
      ],
      example,
      facts,
      ...(evidence ? { evidence } : {}),
    };
  }
}

/** The non-canonical names the query used ("kicks"), whose synonym-of facts explain the link. */
function analysisAliases(query: string, kg: KnowledgeGraph): string[] {
  return kg
    .link(query)
    .filter((m) => m.via !== 'name' && m.via !== 'inflection' && m.via !== 'fuzzy')
    .map((m) => m.surface);
}

/** The reference reasoning of every record (the relevance analysis over the knowledge graph), by id. */
export function referenceSteps(records: readonly PromptRecord[], kg: KnowledgeGraph): Map<string, ReasoningSteps> {
  return new Map(records.map((r) => [r.id, toReasoningSteps(analyzePair(r.example.query, r.example.item, kg))]));
}
