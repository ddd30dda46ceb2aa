/**
 * Text normalisation shared by entity linking, BM25 and the lexical baseline, so that a word is
 * the same token everywhere: lower case, apostrophes dropped ("men's" -> "mens"), every other
 * non-alphanumeric character (hyphens included: "t-shirt" -> "t shirt") a space, except a dot
 * inside a number ("1.7l").
 */
import pluralize from 'pluralize';

export function normalise(text: string): string {
  return text
    .toLowerCase()
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/['’`]/g, '')
    .replace(/(\d)\.(\d)/g, '$1\u0000$2')
    .replace(/[^a-z0-9\u0000]+/g, ' ')
    .replace(/\u0000/g, '.')
    .trim();
}

export function tokenize(text: string): string[] {
  const normalised = normalise(text);
  return normalised === '' ? [] : normalised.split(' ');
}

/**
 * The singular and plural of a normalised phrase, inflecting its last word only ("running shoe" /
 * "running shoes"). Words with digits are left alone ("iphone 15"). pluralize knows the irregular
 * and uncountable English words, which a suffix rule would get wrong.
 */
export function inflections(phrase: string): string[] {
  const words = phrase.split(' ');
  const last = words.at(-1) ?? '';
  if (last.length < 3 || /\d/.test(last)) return [];
  const forms = new Set([pluralize.singular(last), pluralize.plural(last)]);
  forms.delete(last);
  return [...forms].map((form) => [...words.slice(0, -1), form].join(' '));
}

/** Singular form of one token, for bag-of-words matching ("boots" and "boot" are one term). */
export function stem(token: string): string {
  return token.length < 4 || /\d/.test(token) ? token : pluralize.singular(token);
}

/** Words that end a product name's naming segment: what follows says what it is for or comes with. */
const SEGMENT_BREAK = /[,;(|/[]| - | – |\b(?:for|with|without|compatible|fits|by|in|and)\b/i;

/** The part of a title or query that names the product: "Case for iPhone 15, black" -> "Case ". */
export function namingSegment(text: string): string {
  return text.split(SEGMENT_BREAK)[0] ?? '';
}

/** "running shoes" -> "Running Shoes". */
export function titleCase(phrase: string): string {
  return phrase.replace(/(^|[\s-])([a-z])/g, (_, sep: string, c: string) => sep + c.toUpperCase());
}

/** Words that carry no entity: never linked, never fuzzy-matched, not reported as unlinked. */
export const STOP_WORDS = new Set([
  'a', 'an', 'the', 'for', 'with', 'without', 'and', 'or', 'of', 'to', 'in', 'on', 'my', 'by', 'from', 'at', 'i', 'do',
  'something', 'best', 'any', 'need', 'what', 'how', 'gift', 'that', 'is', 'it', 'this', 'your', 'when', 'while', 'fast',
]);
