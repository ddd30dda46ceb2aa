/**
 * Tokenizer benchmark: trains byte-level BPE on an SFT-sized corpus (10k chat documents, about 2 MB)
 * at several vocabulary sizes, then encodes the corpus through AutoTokenizer.
 *
 *   npx tsx bench/tokenizer.ts [documents=10000]
 *
 * The corpus is synthetic but shaped like the SFT set: ChatML prompts with a query and an item, and
 * completions in the <think>/<answer> format, over a Zipf-distributed vocabulary of 30k made-up words so
 * pair statistics look like natural text rather than like a handful of repeated lines.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../pipeline/rng.ts';
import { loadTokenizer, trainBpeTokenizer } from '#engine/tokenizer';

const COMPLETION_TAGS = ['<think>', '</think>', '<answer>', '</answer>'];

function syntheticCorpus(documents: number, rng: Rng): string[] {
  const syllables = ['ka', 'lo', 're', 'mi', 'tan', 'sor', 've', 'pu', 'dim', 'ex', 'qua', 'no', 'str', 'ith', 'ber', 'zo'];
  const words = Array.from({ length: 30_000 }, () =>
    Array.from({ length: 1 + rng.int(4) }, () => syllables[rng.int(syllables.length)]).join(''),
  );
  // Zipf(1.1) over word ranks by inverse transform on the cumulative weights.
  const cumulative: number[] = [];
  words.reduce((sum, _, rank) => (cumulative[rank] = sum + 1 / (rank + 1) ** 1.1), 0);
  const total = cumulative[cumulative.length - 1]!;
  const word = () => {
    const u = rng.next() * total;
    let lo = 0;
    let hi = cumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return words[lo]!;
  };
  const phrase = (n: number) => Array.from({ length: n }, word).join(' ');
  return Array.from({ length: documents }, (_, i) => {
    const grade = `L${1 + rng.int(4)}`;
    return (
      `<|im_start|>user\nquery: ${phrase(3)}\nitem: ${phrase(6)} ${rng.int(1000)} cm, ${phrase(4)}<|im_end|>\n` +
      `<|im_start|>assistant\n<think>\nquery: ${phrase(2)}; constraints: size=${rng.int(50)}\n` +
      `category: ${i % 3 === 0 ? 'match' : 'related'} (${phrase(2)})\n</think>\n<answer>${grade}</answer><|im_end|>\n`
    );
  });
}

const documents = Number(process.argv[2] ?? 10_000);
const corpus = syntheticCorpus(documents, new Rng(13, 'bench/tokenizer'));
const megabytes = corpus.reduce((sum, text) => sum + Buffer.byteLength(text), 0) / 1e6;
console.log(`corpus: ${documents} documents, ${megabytes.toFixed(2)} MB`);

const scratch = await mkdtemp(join(tmpdir(), 'bench-tokenizer-'));
try {
  for (const vocabSize of [512, 2048, 4096]) {
    const dir = join(scratch, String(vocabSize));
    const result = await trainBpeTokenizer(corpus, { vocabSize, extraTokens: COMPLETION_TAGS }, dir);
    const tokenizer = await loadTokenizer(dir);
    const started = performance.now();
    let tokens = 0;
    for (const text of corpus) tokens += tokenizer.encode(text).length;
    const seconds = (performance.now() - started) / 1000;
    console.log(
      `vocab ${vocabSize}: train ${result.seconds.toFixed(2)} s (${result.merges} merges, ${result.distinctWords} distinct pieces), ` +
        `${result.bytesPerToken.toFixed(2)} bytes/token; AutoTokenizer encode ${(tokens / seconds / 1000).toFixed(0)}k tokens/s`,
    );
  }
} finally {
  await rm(scratch, { recursive: true, force: true });
}
