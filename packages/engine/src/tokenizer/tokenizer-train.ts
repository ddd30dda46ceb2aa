/**
 * Trains a byte-level BPE tokenizer for models trained from scratch and writes it in the Hugging Face
 * layout that `loadTokenizer` (and Python's `AutoTokenizer`) read back:
 *
 * - `tokenizer.json`: model BPE over GPT-2's byte alphabet, `Split` pre-tokenizer with
 *   `PRETOKENIZE_PATTERN` then `ByteLevel`, `ByteLevel` decoder, and the added tokens.
 * - `tokenizer_config.json`: bos / eos / pad, the ChatML chat template, the added-token table.
 * - `special_tokens_map.json`.
 *
 * Ids: 256 byte tokens, then one token per merge, then the added tokens (ChatML specials, the
 * `specialTokens` option, then `extraTokens`), the layout Qwen2 uses.
 *
 * Written here rather than taken from npm because no package fits (checked against the registry
 * list): the official `tokenizers` binding (0.23) exposes `Tokenizer.train(files)` with the model's
 * default trainer only (no vocabulary size, minimum frequency or special tokens) and ships 64 MB of
 * native binaries; `@huggingface/tokenizers`, `@lenml/tokenizers` and the gpt-3-encoder family only
 * encode with existing vocabularies.
 *
 * Usage:
 *   const result = await trainBpeTokenizer(texts, { vocabSize: 1024, extraTokens: ['<think>'] }, outDir);
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import TinyQueue from 'tinyqueue';
import { z } from 'zod';
import { BYTE_TO_CHAR, PRETOKENIZE_PATTERN, addedTokenSplitter, pretokenize, toByteChars } from './tokenizer-bytelevel.ts';

/** The tokens the chat template is written in; always present, in this order, after the merges. */
export const CHATML_TOKENS = { endOfText: '<|endoftext|>', imStart: '<|im_start|>', imEnd: '<|im_end|>' } as const;

/** Qwen-style ChatML: `<|im_start|>role\ncontent<|im_end|>\n` per message, then the generation prompt. */
export const CHATML_TEMPLATE =
  "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

const BYTE_TOKENS = 256;
/** Pair keys are `left * PAIR_BASE + right`, exact in a double while ids stay below 2^21. */
const PAIR_BASE = 2 ** 21;

const tokenList = z.array(z.string().min(1, 'an empty token'));

export const BpeTrainerOptionsSchema = z
  .object({
    vocabSize: z
      .number()
      .int()
      .max(PAIR_BASE)
      .default(1024)
      .describe('Upper bound on the vocabulary: 256 byte tokens + merges + added tokens. Fewer when the corpus runs out of pairs seen minFrequency times.'),
    minFrequency: z
      .number()
      .int()
      .min(1)
      .default(2)
      .describe('A pair must occur at least this often (counting repeated words) to become a merge; 2 keeps one-off strings out of small vocabularies.'),
    specialTokens: tokenList
      .default([])
      .describe('Special tokens besides the ChatML ones (<|endoftext|>, <|im_start|>, <|im_end|>); dropped by decode with skipSpecialTokens.'),
    extraTokens: tokenList
      .default([])
      .describe('Tokens kept whole but not special, such as <think> and <answer>: never split, never learned from, kept by decode with skipSpecialTokens.'),
  })
  .strict()
  .superRefine((options, ctx) => {
    const seen = new Set<string>(Object.values(CHATML_TOKENS));
    for (const key of ['specialTokens', 'extraTokens'] as const) {
      options[key].forEach((token, i) => {
        if (seen.has(token)) ctx.addIssue({ code: 'custom', path: [key, i], message: `${token} is listed twice (the ChatML tokens are always included)` });
        seen.add(token);
      });
    }
    const minimum = BYTE_TOKENS + seen.size;
    if (options.vocabSize < minimum) {
      ctx.addIssue({
        code: 'custom',
        path: ['vocabSize'],
        message: `vocabSize ${options.vocabSize} leaves no room for merges: 256 byte tokens + ${seen.size} added tokens need ${minimum}`,
      });
    }
  });

export type BpeTrainerOptions = z.input<typeof BpeTrainerOptionsSchema>;

export interface BpeTrainingProgress {
  merges: number;
  mergeBudget: number;
}

export interface BpeTrainingResult {
  /** Ids in use: bytes + merges + added tokens (the embedding table's row count). */
  vocabSize: number;
  merges: number;
  texts: number;
  /** Texts that were empty or held only added tokens: counted, contributing nothing. */
  emptyTexts: number;
  /** Pre-tokenized pieces in the corpus, and distinct ones. */
  words: number;
  distinctWords: number;
  /** UTF-8 bytes per token over the corpus's pieces with the learned merges: the compression achieved. */
  bytesPerToken: number;
  seconds: number;
  files: string[];
}

interface Pair {
  count: number;
  left: number;
  right: number;
}

/** Highest count first; ties go to the lower left id, then the lower right id, so runs repeat exactly. */
const comparePairs = (a: Pair, b: Pair) => b.count - a.count || a.left - b.left || a.right - b.right;

/**
 * The merge loop over distinct words with their counts. Pair counts are updated incrementally: a merge
 * revisits only the words that contain its pair (an index from pair to words), subtracting their old
 * pairs and adding their new ones. The best pair comes from a max-heap with lazy deletion: an entry
 * whose count is stale is pushed back with the current count. Counts of pairs that do not contain
 * the new token can only fall, and pairs with it are pushed once the merge is done, so a popped entry
 * that matches the current count is the true maximum.
 */
function learnMerges(
  words: number[][],
  counts: number[],
  symbols: string[],
  maxSymbols: number,
  minFrequency: number,
  reserved: ReadonlySet<string>,
  onProgress: ((p: BpeTrainingProgress) => void) | undefined,
): Array<[string, string]> {
  const pairCounts = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  const addPairs = (w: number, sign: 1 | -1, touched?: Set<number>) => {
    const word = words[w]!;
    const count = counts[w]! * sign;
    for (let i = 0; i + 1 < word.length; i++) {
      const key = word[i]! * PAIR_BASE + word[i + 1]!;
      const next = (pairCounts.get(key) ?? 0) + count;
      if (next === 0) pairCounts.delete(key);
      else pairCounts.set(key, next);
      if (sign > 0) {
        let where = pairWords.get(key);
        if (where === undefined) pairWords.set(key, (where = new Set()));
        where.add(w);
        touched?.add(key);
      }
    }
  };
  words.forEach((_, w) => addPairs(w, 1));

  const heap = new TinyQueue<Pair>([], comparePairs);
  for (const [key, count] of pairCounts) heap.push({ count, left: Math.floor(key / PAIR_BASE), right: key % PAIR_BASE });

  const idOf = new Map(symbols.map((s, id) => [s, id]));
  const done = new Set<number>();
  const merges: Array<[string, string]> = [];
  const mergeBudget = maxSymbols - symbols.length;
  const progressEvery = Math.max(1, Math.floor(mergeBudget / 20));
  while (symbols.length < maxSymbols && heap.length > 0) {
    const top = heap.pop()!;
    const key = top.left * PAIR_BASE + top.right;
    const count = pairCounts.get(key) ?? 0;
    if (count < minFrequency) {
      if (top.count < minFrequency) break; // the heap's best is below the bar: nothing left to merge
      continue; // stale entry of a pair that fell below the bar
    }
    if (count !== top.count) {
      heap.push({ ...top, count });
      continue;
    }
    if (done.has(key)) continue;
    done.add(key);
    const merged = symbols[top.left]! + symbols[top.right]!;
    // A merge must not produce an added token's text: the vocabulary is one JSON object.
    if (reserved.has(merged)) continue;
    // Two merges can spell the same token ("ab"+"c", "a"+"bc"): the second reuses its id, adding no entry.
    let id = idOf.get(merged);
    if (id === undefined) {
      id = symbols.push(merged) - 1;
      idOf.set(merged, id);
    }
    merges.push([symbols[top.left]!, symbols[top.right]!]);

    const touched = new Set<number>();
    for (const w of pairWords.get(key) ?? []) {
      const word = words[w]!;
      const replaced: number[] = [];
      for (let i = 0; i < word.length; i++) {
        if (i + 1 < word.length && word[i] === top.left && word[i + 1] === top.right) {
          replaced.push(id);
          i++;
        } else {
          replaced.push(word[i]!);
        }
      }
      if (replaced.length === word.length) continue; // the index is lazy: this word lost the pair earlier
      addPairs(w, -1);
      words[w] = replaced;
      addPairs(w, 1, touched);
    }
    pairWords.delete(key);
    for (const changed of touched) {
      const left = Math.floor(changed / PAIR_BASE);
      const right = changed % PAIR_BASE;
      if (left === id || right === id) heap.push({ count: pairCounts.get(changed) ?? 0, left, right });
    }
    if (merges.length % progressEvery === 0) onProgress?.({ merges: merges.length, mergeBudget });
  }
  return merges;
}

/**
 * Trains on `texts` and writes the tokenizer files into `outDir` (created if missing; each file is
 * written to a temporary name and renamed, so a killed run leaves no half-written file).
 */
export async function trainBpeTokenizer(
  texts: Iterable<string>,
  options: BpeTrainerOptions,
  outDir: string,
  onProgress?: (p: BpeTrainingProgress) => void,
): Promise<BpeTrainingResult> {
  const parsed = BpeTrainerOptionsSchema.safeParse(options);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(options)'}: ${issue.message}`);
    throw new Error(`tokenizer trainer: bad options:\n  ${problems.join('\n  ')}`);
  }
  const { vocabSize, minFrequency, specialTokens, extraTokens } = parsed.data;
  const started = performance.now();
  const specials = [...Object.values(CHATML_TOKENS), ...specialTokens];
  const added = [...specials, ...extraTokens];

  // Count pieces per distinct text first: far fewer distinct pieces than pieces.
  const pieceCounts = new Map<string, number>();
  let textCount = 0;
  let emptyTexts = 0;
  let pieceTotal = 0;
  const splitAdded = addedTokenSplitter(added);
  for (const text of texts) {
    if (typeof text !== 'string') throw new Error(`tokenizer trainer: text #${textCount + 1} is ${text === null ? 'null' : typeof text}, not a string`);
    textCount++;
    let pieces = 0;
    for (const part of splitAdded(text)) {
      if (part.added) continue;
      for (const piece of pretokenize(part.text)) {
        pieceCounts.set(piece, (pieceCounts.get(piece) ?? 0) + 1);
        pieces++;
      }
    }
    if (pieces === 0) emptyTexts++;
    pieceTotal += pieces;
  }

  const charToByte = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));
  const words: number[][] = [];
  const counts: number[] = [];
  let corpusBytes = 0;
  for (const [piece, count] of pieceCounts) {
    const bytes = toByteChars(piece).map((c) => charToByte.get(c)!);
    corpusBytes += bytes.length * count;
    words.push(bytes);
    counts.push(count);
  }

  const symbols = [...BYTE_TO_CHAR];
  const merges = learnMerges(words, counts, symbols, vocabSize - added.length, minFrequency, new Set(added), onProgress);
  const corpusTokens = words.reduce((sum, word, w) => sum + word.length * counts[w]!, 0);

  const vocab: Record<string, number> = {};
  symbols.forEach((symbol, id) => (vocab[symbol] = id));
  const firstAddedId = symbols.length;
  const addedEntries = added.map((content, i) => ({
    id: firstAddedId + i,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: i < specials.length,
  }));

  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedEntries,
    // No normalizer: byte-level BPE is lossless, and decode(encode(x)) must give x back byte for byte.
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [{ type: 'Split', pattern: { Regex: PRETOKENIZE_PATTERN }, behavior: 'Isolated', invert: false }, byteLevel],
    },
    post_processor: null,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
  const tokenizerConfig = {
    tokenizer_class: 'Qwen2Tokenizer',
    bos_token: CHATML_TOKENS.endOfText,
    eos_token: CHATML_TOKENS.imEnd,
    pad_token: CHATML_TOKENS.endOfText,
    unk_token: null,
    add_bos_token: false,
    add_prefix_space: false,
    additional_special_tokens: specials.filter((t) => t !== CHATML_TOKENS.endOfText && t !== CHATML_TOKENS.imEnd),
    added_tokens_decoder: Object.fromEntries(addedEntries.map(({ id, ...rest }) => [String(id), rest])),
    chat_template: CHATML_TEMPLATE,
    // The library's default clean-up rewrites " ." to "." on decode, which would break round trips.
    clean_up_tokenization_spaces: false,
    split_special_tokens: false,
    errors: 'replace',
  };
  const specialTokensMap = {
    bos_token: tokenizerConfig.bos_token,
    eos_token: tokenizerConfig.eos_token,
    pad_token: tokenizerConfig.pad_token,
    additional_special_tokens: tokenizerConfig.additional_special_tokens,
  };

  await mkdir(outDir, { recursive: true });
  const files: Array<[string, unknown]> = [
    ['tokenizer.json', tokenizerJson],
    ['tokenizer_config.json', tokenizerConfig],
    ['special_tokens_map.json', specialTokensMap],
  ];
  for (const [name, content] of files) {
    const path = join(outDir, name);
    await writeFile(`${path}.tmp`, JSON.stringify(content, null, 2) + '\n');
    await rename(`${path}.tmp`, path);
  }
  onProgress?.({ merges: merges.length, mergeBudget: merges.length });

  return {
    vocabSize: firstAddedId + added.length,
    merges: merges.length,
    texts: textCount,
    emptyTexts,
    words: pieceTotal,
    distinctWords: pieceCounts.size,
    bytesPerToken: corpusTokens === 0 ? 0 : corpusBytes / corpusTokens,
    seconds: (performance.now() - started) / 1000,
    files: files.map(([name]) => name),
  };
}
