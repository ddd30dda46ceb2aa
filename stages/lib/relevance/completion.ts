/**
 * The completion format (docs/design.md §2): the one module that renders, parses and verifies the
 * judge's chain of thought. Every stage that writes or reads a completion goes through here.
 *
 * ```
 * <think>
 * query: hiking boots; constraints: gender=men, material=!leather; intent: outdoor walking
 * item: hiking boots; category: Shoes > Outdoor > Hiking Boots; attributes: gender=women, material=leather
 * category: match (hiking boots is-a boots)
 * attributes: gender: conflict, material: conflict
 * rules: R-GENDER
 * </think>
 * <answer>L2</answer>
 * ```
 *
 * Lists are comma-separated because values contain spaces ("navy blue"); a negated constraint is
 * written `key=!value`. With `answerFirst` (TaoSR1's post-CoT) the answer block comes first, so
 * the grade can be read off the first answer token's probabilities.
 */
import { GRADES, type Grade } from './types.ts';

export type CategoryRelation = 'match' | 'related' | 'mismatch';
export type AttributeVerdict = 'match' | 'conflict' | 'unknown';

/** The five reasoning steps, in the order they are written. */
export const STEP_NAMES = ['query', 'item', 'category', 'attributes', 'rules'] as const;
export type StepName = (typeof STEP_NAMES)[number];

export interface ReasoningSteps {
  query: { product: string; constraints: Record<string, string>; intent: string };
  item: { product: string; category: string[]; attributes: Record<string, string> };
  /** `path` is the knowledge-graph evidence as text, e.g. "hiking boots is-a boots". */
  category: { relation: CategoryRelation; path: string };
  attributes: Record<string, AttributeVerdict>;
  rules: string[];
}

export interface RenderOptions {
  answerFirst?: boolean;
}

const CATEGORY_SEPARATOR = ' > ';
const RELATIONS: readonly CategoryRelation[] = ['match', 'related', 'mismatch'];
const VERDICTS: readonly AttributeVerdict[] = ['match', 'conflict', 'unknown'];

function renderPairs(pairs: Record<string, string>, separator: string): string {
  const keys = Object.keys(pairs).sort();
  return keys.length === 0 ? 'none' : keys.map((k) => `${k}${separator}${pairs[k]}`).join(', ');
}

/** The `<think>` body's five lines. */
export function renderSteps(steps: ReasoningSteps): string[] {
  const { query, item, category } = steps;
  return [
    `query: ${query.product || 'none'}; constraints: ${renderPairs(query.constraints, '=')}; intent: ${query.intent || 'none'}`,
    `item: ${item.product || 'none'}; category: ${item.category.join(CATEGORY_SEPARATOR)}; attributes: ${renderPairs(item.attributes, '=')}`,
    `category: ${category.relation}${category.path ? ` (${category.path})` : ''}`,
    `attributes: ${renderPairs(steps.attributes, ': ')}`,
    `rules: ${steps.rules.length === 0 ? 'none' : [...steps.rules].sort().join(', ')}`,
  ];
}

export function renderCompletion(steps: ReasoningSteps, label: Grade, options: RenderOptions = {}): string {
  const think = ['<think>', ...renderSteps(steps), '</think>'].join('\n');
  const answer = `<answer>${label}</answer>`;
  return options.answerFirst ? `${answer}\n${think}` : `${think}\n${answer}`;
}

// ---------------------------------------------------------------------------------------------
// Parsing: tolerant. A model's output is parsed as far as it goes; what is missing or malformed
// becomes a format error rather than an exception, because rewards and metrics need partial credit.

export type FormatError =
  | 'missing_think'
  | 'unclosed_think'
  | 'missing_answer'
  | 'invalid_label'
  | 'multiple_answers'
  | 'wrong_order'
  | 'trailing_text'
  | `missing_step:${StepName}`
  | `malformed_step:${StepName}`
  | `duplicate_step:${StepName}`;

export interface ParsedCompletion {
  /** The steps that parsed; a step that is missing or malformed is absent. */
  steps: Partial<ReasoningSteps>;
  /** The grade in `<answer>`, when it is one of L1–L4. */
  label?: Grade;
  errors: FormatError[];
  /** True when there is no format error at all. */
  formatOk: boolean;
}

function parsePairs(text: string, separator: RegExp): Record<string, string> | undefined {
  const trimmed = text.trim();
  if (trimmed === 'none' || trimmed === '') return {};
  const pairs: Record<string, string> = {};
  for (const part of trimmed.split(',')) {
    const match = separator.exec(part.trim());
    if (!match || !match[1] || match[2] === undefined) return undefined;
    pairs[match[1].trim()] = match[2].trim();
  }
  return pairs;
}

/** "none" stands for an empty value (no product could be named, no intent). */
function noneToEmpty(text: string | undefined): string {
  const trimmed = (text ?? '').trim();
  return trimmed === 'none' ? '' : trimmed;
}

const KEY_EQ_VALUE = /^([^=]+)=(.+)$/;
const KEY_COLON_VALUE = /^([^:]+):\s*(.+)$/;

type StepParser = { [K in StepName]: (body: string) => ReasoningSteps[K] | undefined };

const stepParsers: StepParser = {
  query(body) {
    const m = /^(.+?);\s*constraints:\s*(.*?);\s*intent:\s*(.*)$/.exec(body);
    if (!m) return undefined;
    const constraints = parsePairs(m[2] ?? '', KEY_EQ_VALUE);
    if (!constraints) return undefined;
    return { product: noneToEmpty(m[1]), constraints, intent: noneToEmpty(m[3]) };
  },
  item(body) {
    const m = /^(.+?);\s*category:\s*(.*?);\s*attributes:\s*(.*)$/.exec(body);
    if (!m) return undefined;
    const attributes = parsePairs(m[3] ?? '', KEY_EQ_VALUE);
    if (!attributes) return undefined;
    const category = (m[2] ?? '')
      .split('>')
      .map((s) => s.trim())
      .filter((s) => s.length > 0);
    return { product: noneToEmpty(m[1]), category, attributes };
  },
  category(body) {
    const m = /^(\w+)\s*(?:\((.*)\))?\s*$/.exec(body);
    const relation = m?.[1] as CategoryRelation | undefined;
    if (!relation || !RELATIONS.includes(relation)) return undefined;
    return { relation, path: (m?.[2] ?? '').trim() };
  },
  attributes(body) {
    const pairs = parsePairs(body, KEY_COLON_VALUE);
    if (!pairs) return undefined;
    for (const verdict of Object.values(pairs)) {
      if (!VERDICTS.includes(verdict as AttributeVerdict)) return undefined;
    }
    return pairs as Record<string, AttributeVerdict>;
  },
  rules(body) {
    const trimmed = body.trim();
    if (trimmed === 'none') return [];
    const ids = trimmed.split(',').map((s) => s.trim());
    return ids.every((id) => /^[A-Z][A-Z0-9-]*$/.test(id)) ? ids : undefined;
  },
};

export function parseCompletion(text: string): ParsedCompletion {
  const errors: FormatError[] = [];
  const steps: Partial<ReasoningSteps> = {};

  const thinkStart = text.indexOf('<think>');
  const thinkEnd = text.indexOf('</think>');
  let thinkBody: string | undefined;
  if (thinkStart < 0) errors.push('missing_think');
  else if (thinkEnd < thinkStart) errors.push('unclosed_think');
  // An unclosed block is still read for partial credit: up to the answer tag or the end.
  if (thinkStart >= 0) {
    const answerAfter = text.indexOf('<answer>', thinkStart);
    const end = thinkEnd > thinkStart ? thinkEnd : answerAfter > thinkStart ? answerAfter : text.length;
    thinkBody = text.slice(thinkStart + '<think>'.length, end);
  }

  const answers = [...text.matchAll(/<answer>\s*(.*?)\s*<\/answer>/gs)];
  let label: Grade | undefined;
  if (answers.length === 0) errors.push('missing_answer');
  else {
    if (answers.length > 1) errors.push('multiple_answers');
    const raw = answers[0]?.[1] ?? '';
    if (GRADES.includes(raw as Grade)) label = raw as Grade;
    else errors.push('invalid_label');
  }

  if (thinkBody !== undefined) {
    const seen = new Set<StepName>();
    let lastIndex = -1;
    for (const line of thinkBody.split('\n')) {
      const m = /^\s*(\w+):\s*(.*)$/.exec(line);
      const name = m?.[1] as StepName | undefined;
      if (!m || !name || !STEP_NAMES.includes(name)) continue;
      if (seen.has(name)) {
        errors.push(`duplicate_step:${name}`);
        continue;
      }
      seen.add(name);
      const index = STEP_NAMES.indexOf(name);
      if (index < lastIndex && !errors.includes('wrong_order')) errors.push('wrong_order');
      lastIndex = index;
      const parsed = stepParsers[name](m[2] ?? '');
      if (parsed === undefined) errors.push(`malformed_step:${name}`);
      else (steps as Record<StepName, unknown>)[name] = parsed;
    }
    for (const name of STEP_NAMES) if (!seen.has(name)) errors.push(`missing_step:${name}`);
  }

  const closeEnds = ['</answer>', '</think>']
    .map((tag) => ({ at: text.lastIndexOf(tag), length: tag.length }))
    .filter(({ at }) => at >= 0)
    .map(({ at, length }) => at + length);
  if (closeEnds.length > 0 && text.slice(Math.max(...closeEnds)).trim().length > 0) errors.push('trailing_text');

  return { steps, label, errors, formatOk: errors.length === 0 };
}

// ---------------------------------------------------------------------------------------------
// Verification: each step against the reference reasoning (from the relevance analysis of the
// gold record over the knowledge graph) and the answer against the gold grade. This is what the
// stepwise rewards and the eval's step-verification rate use.

export interface StepVerdicts {
  query: boolean;
  item: boolean;
  category: boolean;
  attributes: boolean;
  rules: boolean;
}

export interface Verification {
  steps: StepVerdicts;
  /** Steps that verified, of five. */
  stepsVerified: number;
  labelCorrect: boolean;
  formatOk: boolean;
  /** Format is clean, every step verifies and the grade is right: what rejection sampling keeps. */
  accepted: boolean;
}

function normalise(text: string): string {
  return text.trim().toLowerCase().replace(/\s+/g, ' ');
}

function sameRecord(a: Record<string, string>, b: Record<string, string>): boolean {
  const keysA = Object.keys(a).map(normalise).sort();
  const keysB = Object.keys(b).map(normalise).sort();
  if (keysA.join('\u0000') !== keysB.join('\u0000')) return false;
  const lookup = new Map(Object.entries(b).map(([k, v]) => [normalise(k), normalise(v)]));
  return Object.entries(a).every(([k, v]) => lookup.get(normalise(k)) === normalise(v));
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.map(normalise).sort().join('\u0000') === b.map(normalise).sort().join('\u0000');
}

/**
 * Checks each parsed step against the reference. Intent is free text and not checked; the
 * category step is judged on its relation (the path is evidence, many paths are valid).
 */
export function verifyCompletion(parsed: ParsedCompletion, reference: ReasoningSteps, gold: Grade): Verification {
  const { steps } = parsed;
  const verdicts: StepVerdicts = {
    query:
      steps.query !== undefined &&
      normalise(steps.query.product) === normalise(reference.query.product) &&
      sameRecord(steps.query.constraints, reference.query.constraints),
    item:
      steps.item !== undefined &&
      normalise(steps.item.product) === normalise(reference.item.product) &&
      sameList(steps.item.category, reference.item.category) &&
      sameRecord(steps.item.attributes, reference.item.attributes),
    category: steps.category !== undefined && steps.category.relation === reference.category.relation,
    attributes: steps.attributes !== undefined && sameRecord(steps.attributes, reference.attributes),
    rules: steps.rules !== undefined && sameList(steps.rules, reference.rules),
  };
  const stepsVerified = STEP_NAMES.filter((name) => verdicts[name]).length;
  const labelCorrect = parsed.label === gold;
  return {
    steps: verdicts,
    stepsVerified,
    labelCorrect,
    formatOk: parsed.formatOk,
    accepted: parsed.formatOk && labelCorrect && stepsVerified === STEP_NAMES.length,
  };
}

/**
 * What a teacher or a judge is told about the output format, appended to the system prompt of
 * LLM teachers (the rules teacher renders the format directly).
 */
export function formatInstructions(options: RenderOptions = {}): string {
  const example = renderCompletion(
    {
      query: { product: 'hiking boots', constraints: { gender: 'men' }, intent: '' },
      item: { product: 'hiking boots', category: ['Shoes', 'Outdoor', 'Hiking Boots'], attributes: { gender: 'women' } },
      category: { relation: 'match', path: 'hiking boots is-a boots' },
      attributes: { gender: 'conflict' },
      rules: ['R-GENDER'],
    },
    'L2',
    options,
  );
  return [
    'Answer in exactly this format: five reasoning lines inside <think>, then the grade inside <answer>.',
    'Lists are comma-separated key=value pairs (a negated constraint is key=!value); write "none" for an empty list.',
    'The category line is match, related or mismatch with the knowledge-graph evidence in parentheses;',
    'each attribute verdict is match, conflict or unknown; the rules line names the ids of the rules that fire.',
    'Example:',
    example,
  ].join('\n');
}

/** A completion parsed and verified against the reference reasoning and the gold grade. */
export interface Judgement {
  parsed: ParsedCompletion;
  verification: Verification;
  /** The grade is the gold one and the format parses: what pass@k and DPO's "correct" count. */
  correct: boolean;
}

export function judgeCompletion(text: string, reference: ReasoningSteps, gold: Grade): Judgement {
  const parsed = parseCompletion(text);
  const verification = verifyCompletion(parsed, reference, gold);
  return { parsed, verification, correct: verification.labelCorrect && parsed.formatOk };
}
