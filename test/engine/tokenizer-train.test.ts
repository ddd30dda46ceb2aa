import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import { BYTE_TO_CHAR, encodeWithMerges, pretokenize, toByteChars, type ByteLevelBpe } from '../../packages/engine/src/tokenizer/tokenizer-bytelevel.ts';
import { trainBpeTokenizer, type BpeTrainingProgress, type BpeTrainingResult } from '../../packages/engine/src/tokenizer/tokenizer-train.ts';
import { loadTokenizer, type Tokenizer } from '../../packages/engine/src/tokenizer/tokenizer.ts';

const COMPLETION_TAGS = ['<think>', '</think>', '<answer>', '</answer>'];

/** Catalogue-like lines with what byte-level BPE must survive: accents, CJK, emoji with modifiers, digits, whitespace runs. */
const SAMPLES = [
  'waterproof hiking boots men size 42',
  'ergonomic office chair with lumbar support, black mesh',
  "It's the kids' 3-in-1 stroller — naïve café edition",
  '女士防水登山鞋 38码 💧🥾',
  'thumbs up 👍🏽 family 👨‍👩‍👧 flags 🇩🇪',
  'price: 1299.99 USD\tqty:  3\r\n',
  '   leading spaces and trailing    ',
  'line one\n\n\nline four\n  indented',
  '<think>\nquery: chair; constraints: colour=black\n</think>\n<answer>L3</answer>',
];

function corpus(size: number, seed: number): string[] {
  const rng = new Rng(seed, 'tokenizer-corpus');
  const words = SAMPLES.join(' ').split(/(\s+)/);
  return Array.from({ length: size }, (_, i) => {
    const n = 3 + rng.int(12);
    const start = rng.int(words.length);
    return `${i % 7 === 0 ? SAMPLES[i % SAMPLES.length] : ''}${words.slice(start, start + n).join('')}`;
  });
}

async function readBpe(dir: string): Promise<ByteLevelBpe> {
  const json = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8'));
  return {
    vocab: new Map(Object.entries(json.model.vocab as Record<string, number>)),
    merges: json.model.merges,
    addedTokens: new Map((json.added_tokens as Array<{ content: string; id: number }>).map((t) => [t.content, t.id])),
  };
}

/**
 * The textbook trainer: recount every pair before each merge. Same rules as the real one (ties to the
 * lower left then right id; a merge spelling an existing token reuses its id; a pair merges once), so
 * the incremental pair counting must pick exactly the same merges.
 */
function naiveMerges(texts: string[], vocabSize: number, minFrequency: number): Array<[string, string]> {
  const words = new Map<string, number>();
  for (const piece of texts.flatMap(pretokenize)) words.set(piece, (words.get(piece) ?? 0) + 1);
  const idOf = new Map(BYTE_TO_CHAR.map((c, id) => [c, id]));
  const symbols = [...BYTE_TO_CHAR];
  const segmented = [...words].map(([piece, count]) => ({ parts: toByteChars(piece), count }));
  const merges: Array<[string, string]> = [];
  const done = new Set<string>();
  while (symbols.length < vocabSize - 3) {
    const counts = new Map<string, number>();
    for (const { parts, count } of segmented) {
      for (let i = 0; i + 1 < parts.length; i++) counts.set(`${parts[i]} ${parts[i + 1]}`, (counts.get(`${parts[i]} ${parts[i + 1]}`) ?? 0) + count);
    }
    let best: [string, string] | undefined;
    let bestCount = 0;
    for (const [key, count] of counts) {
      const [l, r] = key.split(' ') as [string, string];
      if (done.has(key) || count < minFrequency) continue;
      const wins =
        count > bestCount ||
        (count === bestCount && (idOf.get(l)! < idOf.get(best![0])! || (l === best![0] && idOf.get(r)! < idOf.get(best![1])!)));
      if (wins) [best, bestCount] = [[l, r], count];
    }
    if (best === undefined) break;
    done.add(best.join(' '));
    merges.push(best);
    const merged = best[0] + best[1];
    if (!idOf.has(merged)) idOf.set(merged, symbols.push(merged) - 1);
    for (const word of segmented) {
      const next: string[] = [];
      for (let i = 0; i < word.parts.length; i++) {
        if (word.parts[i] === best[0] && word.parts[i + 1] === best[1]) next.push(merged), i++;
        else next.push(word.parts[i]!);
      }
      word.parts = next;
    }
  }
  return merges;
}

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'tokenizer-train-test-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('pretokenize', () => {
  it('splits numbers into groups of up to three digits (Llama 3), words with their leading space', () => {
    expect(pretokenize('sonicare 4100 10000mah, 7 pack')).toEqual(['sonicare', ' ', '410', '0', ' ', '100', '00', 'mah', ',', ' ', '7', ' pack']);
  });
});

describe('trainBpeTokenizer on a hand-checked corpus', () => {
  it('learns the merges counted by hand and encodes with them', async () => {
    const dir = join(scratch, 'abab');
    // Pieces: "abab" twice, "ab" once. Pairs: (a,b) 2*2 + 1 = 5, (b,a) 2 -> merge a+b.
    // Then words [ab ab] x2, [ab] x1: (ab,ab) 2 >= minFrequency 2 -> merge ab+ab. Then no pairs remain.
    const result = await trainBpeTokenizer(['abab', 'abab', 'ab', '', '<|im_end|>'], { vocabSize: 1000 }, dir);
    const bpe = await readBpe(dir);
    expect(bpe.merges).toEqual([
      ['a', 'b'],
      ['ab', 'ab'],
    ]);
    // 256 byte tokens, 2 merges, 3 ChatML tokens.
    expect(result.vocabSize).toBe(256 + 2 + 3);
    expect(result.merges).toBe(2);
    expect(result.texts).toBe(5);
    expect(result.emptyTexts).toBe(2); // '' and a text that is only an added token
    // 10 bytes over 3 tokens (abab, abab, ab).
    expect(result.bytesPerToken).toBeCloseTo(10 / 3, 12);
    // Pieces "abab" and " ab"; ids: bytes are 0..255 in byte order (space = 32), then 256 "ab", 257 "abab".
    expect(encodeWithMerges(bpe, 'abab ab')).toEqual([257, 32, 256]);
    const tokenizer = await loadTokenizer(dir);
    expect(tokenizer.encode('abab ab')).toEqual([257, 32, 256]);
  });

  it('breaks count ties by the lower token id, so runs repeat exactly', async () => {
    const dir = join(scratch, 'tie');
    // (x,y) and (y,z) both occur once; 'x' (byte 120) < 'y' (121) so x+y wins. Room for one merge only.
    await trainBpeTokenizer(['xy', 'yz'], { vocabSize: 256 + 1 + 3, minFrequency: 1 }, dir);
    expect((await readBpe(dir)).merges).toEqual([['x', 'y']]);
  });

  it('rejects options that leave no room for merges or repeat a token, naming the key', async () => {
    const dir = join(scratch, 'bad');
    await expect(trainBpeTokenizer(['x'], { vocabSize: 260, extraTokens: COMPLETION_TAGS }, dir)).rejects.toThrow(
      'vocabSize: vocabSize 260 leaves no room for merges: 256 byte tokens + 7 added tokens need 263',
    );
    await expect(trainBpeTokenizer(['x'], { vocabSize: 300, specialTokens: ['<|im_end|>'] }, dir)).rejects.toThrow(
      'specialTokens.0: <|im_end|> is listed twice (the ChatML tokens are always included)',
    );
    await expect(trainBpeTokenizer(['x'], { vocabSize: 300, vocab: 3 } as never, dir)).rejects.toThrow('vocab');
    await expect(trainBpeTokenizer(['x', null] as never, {}, dir)).rejects.toThrow('tokenizer trainer: text #2 is null, not a string');
  });
});

describe('incremental pair counting', () => {
  it('picks the merges a full recount picks, on random corpora with runs and shared prefixes', async () => {
    const alphabet = ['a', 'b', 'c', ' ', '  ', 'é', '7', '\n', 'aa'];
    for (const [seed, minFrequency] of [
      [1, 1],
      [2, 2],
      [3, 3],
    ] as const) {
      const rng = new Rng(seed, 'bpe-random');
      const texts = Array.from({ length: 60 }, () => Array.from({ length: 1 + rng.int(25) }, () => alphabet[rng.int(alphabet.length)]).join(''));
      const dir = join(scratch, `random-${seed}`);
      await trainBpeTokenizer(texts, { vocabSize: 256 + 3 + 80, minFrequency }, dir);
      expect((await readBpe(dir)).merges, `seed ${seed}`).toEqual(naiveMerges(texts, 256 + 3 + 80, minFrequency));
    }
  });
});

describe('a trained tokenizer loaded back by AutoTokenizer', () => {
  const texts = corpus(400, 7);
  let dir: string;
  let tokenizer: Tokenizer;
  let bpe: ByteLevelBpe;
  let result: BpeTrainingResult;
  const progress: BpeTrainingProgress[] = [];
  beforeAll(async () => {
    dir = join(scratch, 'trained');
    result = await trainBpeTokenizer(texts, { vocabSize: 400, extraTokens: COMPLETION_TAGS }, dir, (p) => progress.push(p));
    tokenizer = await loadTokenizer(dir);
    bpe = await readBpe(dir);
  });

  it('gives the ids of the trainer own encoder, and decodes back to the text', () => {
    const unseen = ['Zebra-print 🦓 sofa, 2 seats\n\n', '  ', 'ÄÖÜ ß ẞ', '12345678901234567890', '\u0000\u0007 control'];
    for (const text of [...SAMPLES, ...texts.slice(0, 50), ...unseen]) {
      const ids = tokenizer.encode(text);
      expect(ids, text).toEqual(encodeWithMerges(bpe, text));
      expect(tokenizer.decode(ids)).toBe(text);
    }
  });

  it('agrees with the trainer encoder on random Unicode: controls, accents, combining marks, CJK, emoji, ZWJ', () => {
    const ranges: Array<[number, number]> = [[0x00, 0x7f], [0xa0, 0x17f], [0x300, 0x36f], [0x4e00, 0x4e80], [0x1f300, 0x1f6ff], [0x200d, 0x200d], [0x3000, 0x3003]];
    const rng = new Rng(5, 'unicode-fuzz');
    for (let n = 0; n < 200; n++) {
      const text = Array.from({ length: 1 + rng.int(30) }, () => {
        const [lo, hi] = ranges[rng.int(ranges.length)]!;
        return String.fromCodePoint(lo + rng.int(hi - lo + 1));
      }).join('');
      const ids = tokenizer.encode(text);
      expect(ids, JSON.stringify(text)).toEqual(encodeWithMerges(bpe, text));
      expect(tokenizer.decode(ids)).toBe(text);
    }
  });

  it('reports progress up to the merges it learned', () => {
    expect(progress.length).toBeGreaterThan(2);
    expect(progress.map((p) => p.merges)).toEqual([...progress.map((p) => p.merges)].sort((a, b) => a - b));
    expect(progress.at(-1)!.merges).toBe(result.merges);
  });

  it('fills the vocabulary it was given', () => {
    // 400 - 256 bytes - 7 added = 137 merges; every sample line recurs dozens of times in the corpus and
    // the lines hold well over 137 distinct byte pairs, so the budget stops training, not the corpus
    // (the "abab" test above shows the other case).
    expect(tokenizer.vocabSize).toBe(400);
    expect(bpe.vocab.size + bpe.addedTokens.size).toBe(400);
  });

  it('keeps completion tags whole and non-special, ChatML tokens whole and special', () => {
    const text = '<|im_start|>assistant\n<think>\nok</think>\n<answer>L4</answer><|im_end|>';
    const ids = tokenizer.encode(text);
    for (const tag of [...COMPLETION_TAGS, '<|im_start|>', '<|im_end|>']) expect(ids).toContain(tokenizer.tokenId(tag));
    expect(tokenizer.decode(ids, { skipSpecialTokens: true })).toBe('assistant\n<think>\nok</think>\n<answer>L4</answer>');
  });

  it('has ChatML special ids: eos <|im_end|>, pad and bos <|endoftext|>', () => {
    // Added tokens follow the 400 - 7 = 393 BPE tokens in order: <|endoftext|>, <|im_start|>, <|im_end|>, tags.
    expect(tokenizer.padTokenId).toBe(393);
    expect(tokenizer.bosTokenId).toBe(393);
    expect(tokenizer.eosTokenId).toBe(395);
  });

  it('renders the ChatML template', () => {
    const messages = [
      { role: 'system', content: 'Grade relevance.' },
      { role: 'user', content: 'query: boots' },
      { role: 'assistant', content: '<answer>L2</answer>' },
    ];
    expect(tokenizer.applyChatTemplate(messages.slice(0, 2), { addGenerationPrompt: true })).toBe(
      '<|im_start|>system\nGrade relevance.<|im_end|>\n<|im_start|>user\nquery: boots<|im_end|>\n<|im_start|>assistant\n',
    );
    expect(tokenizer.applyChatTemplate(messages, { addGenerationPrompt: false })).toBe(
      '<|im_start|>system\nGrade relevance.<|im_end|>\n<|im_start|>user\nquery: boots<|im_end|>\n' +
        '<|im_start|>assistant\n<answer>L2</answer><|im_end|>\n',
    );
  });

  it('is deterministic and independent of the order of the texts', async () => {
    const shuffled = [...texts].reverse();
    const again = join(scratch, 'trained-again');
    await trainBpeTokenizer(shuffled, { vocabSize: 400, extraTokens: COMPLETION_TAGS }, again);
    expect(await readFile(join(again, 'tokenizer.json'), 'utf8')).toBe(await readFile(join(dir, 'tokenizer.json'), 'utf8'));
  });
});
