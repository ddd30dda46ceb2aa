/**
 * Text normalisation and word segmentation shared by everything that turns text into words or keys
 * (entity linking, the catalog KG, BM25 and both lexical baselines, the prompt's evidence, the split
 * by query, DeepBoW, the serving cache), so that a word is the same token everywhere, in any script.
 *
 * Latin text: lower case, accents dropped, apostrophes dropped ("men's" -> "mens"), every other
 * character that is no letter or digit (hyphens included: "t-shirt" -> "t shirt") a word break,
 * except a dot inside a number ("1.7l"). Text in other scripts keeps its letters (NFKC: full- and
 * half-width forms folded) and is cut into words by the ICU word breaker behind Node's
 * `Intl.Segmenter` (dictionary-based for Chinese, Japanese and Thai, which write no spaces:
 * "防水ハイキングブーツ" -> 防水 / ハイキング / ブーツ), keeping only word-like segments. A chunk
 * of plain ASCII letters and digits skips the segmenter, so Latin words split exactly as before.
 */
import pluralize from 'pluralize';

const wordSegmenter = new Intl.Segmenter(undefined, { granularity: 'word' });
const PLAIN_ASCII_WORD = /^[a-z0-9.]+$/;

/** Lower case, accents dropped, NFKC; runs of anything but letters, marks and digits become one space. */
function clean(text: string): string {
  return text
    .toLowerCase()
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    // Compatibility forms that decompose into capitals ("™" -> "TM") are marks, not words.
    .replace(/\p{Lu}+/gu, ' ')
    .normalize('NFKC')
    .replace(/['’`]/g, '')
    .replace(/(\d)\.(\d)/g, '$1\u0000$2')
    .replace(/[^\p{L}\p{M}\p{N}\u0000]+/gu, ' ')
    .replace(/\u0000/g, '.')
    .trim();
}

/** The words of a text, normalised (see above); the one word segmentation of the project. */
export function tokenize(text: string): string[] {
  const cleaned = clean(text);
  if (cleaned === '') return [];
  const words: string[] = [];
  for (const chunk of cleaned.split(' ')) {
    if (PLAIN_ASCII_WORD.test(chunk)) words.push(chunk);
    else words.push(...segmentWords(chunk));
  }
  return words;
}

const KATAKANA = /^[\p{Script=Katakana}\u30fc]+$/u;

/**
 * The word-like segments of one chunk. ICU's Japanese dictionary lacks many katakana loanwords and
 * breaks them into lone kana ("フェイシャル" -> フェ / イ / シ / ャ / ル); no katakana word is one
 * kana long, so a katakana segment of one character is joined to the katakana segment it touches,
 * and a segment touching such a lone kana joins too ("ウォッシャブルマスカラ" -> ウォッシャブル /
 * マスカラ, where the dictionary's own words stay apart).
 */
function segmentWords(chunk: string): string[] {
  const words: string[] = [];
  let previous: { end: number; lone: boolean } | undefined;
  for (const s of wordSegmenter.segment(chunk)) {
    if (!s.isWordLike) continue;
    const katakana = KATAKANA.test(s.segment);
    const lone = katakana && [...s.segment].length === 1;
    if (katakana && previous && previous.end === s.index && (lone || previous.lone)) words[words.length - 1] += s.segment;
    else words.push(s.segment);
    previous = katakana ? { end: s.index + s.segment.length, lone } : undefined;
  }
  return words;
}

/** The text's words joined by single spaces: the key under which texts are one ("Running Shoes" = "running shoes"). */
export function normalise(text: string): string {
  return tokenize(text).join(' ');
}

/** A word of plain Latin letters, the only kind English inflection (pluralize) applies to. */
const LATIN_WORD = /^[a-z]+$/;

/**
 * The singular and plural of a normalised phrase, inflecting its last word only ("running shoe" /
 * "running shoes"). Words with digits are left alone ("iphone 15"). pluralize knows the irregular
 * and uncountable English words, which a suffix rule would get wrong.
 */
export function inflections(phrase: string): string[] {
  const words = phrase.split(' ');
  const last = words.at(-1) ?? '';
  if (last.length < 3 || !LATIN_WORD.test(last)) return [];
  const forms = new Set([pluralize.singular(last), pluralize.plural(last)]);
  forms.delete(last);
  return [...forms].map((form) => [...words.slice(0, -1), form].join(' '));
}

/** Singular form of one token, for bag-of-words matching ("boots" and "boot" are one term). */
export function stem(token: string): string {
  return token.length < 4 || !LATIN_WORD.test(token) ? token : pluralize.singular(token);
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
