/**
 * Byte-level BPE as the Hugging Face `tokenizers` format defines it (GPT-2's byte-to-unicode table,
 * a regex pre-tokenizer, merges applied by rank), shared by the trainer (`tokenizer-train.ts`) and by
 * `encodeWithMerges`, the trainer's own encoder. Runtime encoding always goes through
 * `@huggingface/transformers` (`tokenizer.ts`); `encodeWithMerges` exists so the files the trainer
 * writes can be checked against an independent reading of the same merges.
 */

/**
 * The split pattern written into trained `tokenizer.json` files: Qwen2's refinement of GPT-2's
 * (newline runs kept apart, punctuation attached to a following letter run) with Llama 3's digit
 * groups of up to three instead of single digits: a small model trained from scratch copies model
 * numbers and capacities ("sonicare 4100", "10000mah") from the prompt into its reasoning, and digit by
 * digit it loops on runs of zeros; in groups of three it copies them as two or three tokens. The
 * `(?i:...)` contraction group spelled out because Node 20's RegExp has no inline flags. The same
 * string is valid for the Rust `tokenizers` library (Python users) and for transformers.js.
 */
export const PRETOKENIZE_PATTERN =
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const pretokenizeRegExp = new RegExp(PRETOKENIZE_PATTERN, 'gu');

/** Splits text into the pieces BPE runs on, as the `Split` pre-tokenizer with behaviour `Isolated` does. */
export function pretokenize(text: string): string[] {
  return text.match(pretokenizeRegExp) ?? [];
}

/**
 * GPT-2's table from bytes to printable characters: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100 onwards, in byte order. Every byte-level BPE vocabulary is written in it.
 */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const table: string[] = [];
  let next = 0x100;
  for (let b = 0; b < 256; b++) table.push(String.fromCharCode(printable(b) ? b : next++));
  return table;
})();

const utf8 = new TextEncoder();

/** The byte-level characters of a piece of text, one per UTF-8 byte. */
export function toByteChars(piece: string): string[] {
  return Array.from(utf8.encode(piece), (b) => BYTE_TO_CHAR[b]!);
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Returns a function that splits text around added tokens (specials like `<|im_end|>`, kept-whole tags
 * like `<think>`), longest first so that overlapping tokens resolve as the library resolves them.
 * Added tokens never reach BPE, so they are neither learned from nor broken up. The pattern is built
 * once because the trainer splits every text of the corpus with it.
 */
export function addedTokenSplitter(addedTokens: readonly string[]): (text: string) => Array<{ text: string; added: boolean }> {
  const alternation = [...addedTokens].sort((a, b) => b.length - a.length).map(escapeRegExp).join('|');
  const pattern = addedTokens.length === 0 ? null : new RegExp(alternation, 'g');
  return (text) => (pattern === null ? (text === '' ? [] : [{ text, added: false }]) : splitAround(text, pattern));
}

function splitAround(text: string, pattern: RegExp): Array<{ text: string; added: boolean }> {
  const parts: Array<{ text: string; added: boolean }> = [];
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) parts.push({ text: text.slice(last, match.index), added: false });
    parts.push({ text: match[0], added: true });
    last = match.index + match[0].length;
  }
  if (last < text.length) parts.push({ text: text.slice(last), added: false });
  return parts;
}

/** What `encodeWithMerges` needs from a trained tokenizer. */
export interface ByteLevelBpe {
  vocab: ReadonlyMap<string, number>;
  merges: ReadonlyArray<readonly [string, string]>;
  /** Added tokens (special or not) and their ids. */
  addedTokens: ReadonlyMap<string, number>;
}

/**
 * Encodes text with a byte-level BPE: added tokens first, then per pre-tokenized piece, repeatedly
 * merge the adjacent pair of lowest rank (leftmost on ties) until none has a rank, as the Rust
 * library and transformers.js do. Quadratic in the piece length, which is fine for checking files; it
 * is not the runtime encoder.
 */
export function encodeWithMerges(bpe: ByteLevelBpe, text: string): number[] {
  const ranks = new Map(bpe.merges.map(([a, b], rank) => [`${a} ${b}`, rank]));
  const ids: number[] = [];
  for (const part of addedTokenSplitter([...bpe.addedTokens.keys()])(text)) {
    if (part.added) {
      ids.push(bpe.addedTokens.get(part.text)!);
      continue;
    }
    for (const piece of pretokenize(part.text)) {
      const symbols = toByteChars(piece);
      for (;;) {
        let best = -1;
        let bestRank = Infinity;
        for (let i = 0; i + 1 < symbols.length; i++) {
          const rank = ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
          if (rank !== undefined && rank < bestRank) [best, bestRank] = [i, rank];
        }
        if (best < 0) break;
        symbols.splice(best, 2, symbols[best]! + symbols[best + 1]!);
      }
      for (const symbol of symbols) {
        const id = bpe.vocab.get(symbol);
        if (id === undefined) throw new Error(`encodeWithMerges: "${symbol}" is not in the vocabulary`);
        ids.push(id);
      }
    }
  }
  return ids;
}
