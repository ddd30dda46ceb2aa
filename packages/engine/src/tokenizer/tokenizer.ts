/**
 * Tokenizers for the engine, loaded by `@huggingface/transformers`' AutoTokenizer from a local folder
 * in the Hugging Face layout (`tokenizer.json` + `tokenizer_config.json`), the same files a checkpoint
 * carries. Remote loading is off unless `allowRemote` turns it on.
 *
 *   const tokenizer = await loadTokenizer('checkpoints/sft');
 *   const ids = tokenizer.encode('ergonomic office chair');          // number[]
 *   tokenizer.decode(ids, { skipSpecialTokens: true });              // 'ergonomic office chair'
 *   const prompt = tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
 *   await copyTokenizerFiles(tokenizer.dir, checkpointDir);          // next to model.safetensors
 *
 * The library is imported lazily: importing it costs about half a second, which commands that never
 * tokenize should not pay.
 */
import { copyFile, mkdir, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';

/** The files AutoTokenizer reads; a folder without one of them cannot be loaded. */
export const REQUIRED_TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json'] as const;

/** Every tokenizer file a checkpoint should carry when present (older layouts keep vocab and merges apart). */
const TOKENIZER_FILES = [
  ...REQUIRED_TOKENIZER_FILES,
  'special_tokens_map.json',
  'added_tokens.json',
  'vocab.json',
  'merges.txt',
  'chat_template.jinja',
] as const;

export const TokenizerLoadOptionsSchema = z
  .object({
    allowRemote: z
      .boolean()
      .default(false)
      .describe('Let a name that is not a local folder be fetched from the Hugging Face Hub. Off: runs must not depend on the network.'),
  })
  .strict();

export type TokenizerLoadOptions = z.input<typeof TokenizerLoadOptionsSchema>;

export interface ChatMessage {
  role: string;
  content: string;
}

export interface Tokenizer {
  /** The absolute folder it was loaded from (or the hub name when loaded remotely). */
  readonly dir: string;
  /** Names of the tokenizer files in `dir`, to copy into a checkpoint. */
  readonly files: readonly string[];
  /** One more than the largest id, added tokens included: the embedding table's row count. */
  readonly vocabSize: number;
  readonly eosTokenId: number;
  /** The pad token's id, or the eos id when the tokenizer names no pad token (as for Llama 3). */
  readonly padTokenId: number;
  readonly bosTokenId: number | undefined;
  /**
   * `addSpecialTokens` (default false) runs the tokenizer's post-processor, e.g. Llama's leading
   * `<|begin_of_text|>`. Off by default because the text is usually rendered by the chat template,
   * which writes its own special tokens.
   */
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  /** `skipSpecialTokens` (default false) drops special tokens; non-special added tokens such as `<think>` stay. */
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  /** Renders messages with the tokenizer's own chat template (Jinja). */
  applyChatTemplate(messages: readonly ChatMessage[], options: { addGenerationPrompt: boolean }): string;
  /** The id of one token string (an added token, or a vocabulary entry), or undefined. */
  tokenId(token: string): number | undefined;
}

/** The parts of transformers.js' PreTrainedTokenizer used here (its own typings are loose). */
interface LibraryTokenizer {
  encode(text: string, options: { add_special_tokens: boolean }): number[];
  decode(ids: number[], options: { skip_special_tokens: boolean }): string;
  apply_chat_template(messages: ChatMessage[], options: { tokenize: false; add_generation_prompt: boolean }): unknown;
  get_vocab(): Map<string, number>;
  convert_tokens_to_ids(token: string): number | null | undefined;
  eos_token: string | null;
  eos_token_id: number | null | undefined;
  pad_token_id: number | null | undefined;
  bos_token_id: number | null | undefined;
  chat_template: unknown;
}

async function isDirectory(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

async function presentFiles(dir: string, names: readonly string[]): Promise<string[]> {
  const present = await Promise.all(names.map((name) => stat(join(dir, name)).then((s) => s.isFile(), () => false)));
  return names.filter((_, i) => present[i]);
}

/**
 * Checks the folder before the library sees it: given a missing folder or file, AutoTokenizer fails
 * with "Cannot read properties of undefined (reading 'tokenizer_class')", which names neither.
 */
async function checkTokenizerFolder(dir: string): Promise<string[]> {
  if (!(await isDirectory(dir))) throw new Error(`tokenizer folder ${dir} does not exist or is not a folder`);
  const files = await presentFiles(dir, TOKENIZER_FILES);
  const missing = REQUIRED_TOKENIZER_FILES.filter((name) => !files.includes(name));
  if (missing.length > 0) {
    throw new Error(`tokenizer folder ${dir} lacks ${missing.join(' and ')} (AutoTokenizer needs ${REQUIRED_TOKENIZER_FILES.join(' and ')})`);
  }
  return files;
}

/**
 * Loads the tokenizer in `dir`. With `allowRemote`, a `dir` that is not a local folder is taken as a
 * Hub name (e.g. `Qwen/Qwen3-0.6B`). The library's remote switch is process-wide, so it is set on
 * every call.
 */
export async function loadTokenizer(dir: string, options: TokenizerLoadOptions = {}): Promise<Tokenizer> {
  const { allowRemote } = TokenizerLoadOptionsSchema.parse(options);
  const absolute = resolve(dir);
  // A relative name that is no local folder may be a Hub name ("Qwen/Qwen3-0.6B").
  const hubName = !isAbsolute(dir) && !(await isDirectory(absolute));
  if (hubName && !allowRemote) {
    throw new Error(`tokenizer folder ${absolute} does not exist (to load "${dir}" from the Hugging Face Hub, set allowRemote)`);
  }
  const remote = hubName && allowRemote;
  // The library takes an absolute path for a folder, never for a Hub name; a relative "a/b" it would.
  const source = remote ? dir : absolute;
  const files = remote ? [] : await checkTokenizerFolder(absolute);

  const { AutoTokenizer, env } = await import('@huggingface/transformers');
  env.allowLocalModels = true;
  env.allowRemoteModels = allowRemote;
  let library: LibraryTokenizer;
  try {
    library = (await AutoTokenizer.from_pretrained(source, { local_files_only: !allowRemote })) as unknown as LibraryTokenizer;
  } catch (error) {
    throw new Error(`cannot load the tokenizer in ${source}: ${error instanceof Error ? error.message : String(error)}`);
  }
  return wrap(library, source, files);
}

function wrap(library: LibraryTokenizer, dir: string, files: string[]): Tokenizer {
  const eosTokenId = library.eos_token_id ?? undefined;
  if (eosTokenId === undefined) {
    throw new Error(`the tokenizer in ${dir} has no eos token: set eos_token in tokenizer_config.json (generation needs it to stop)`);
  }
  let maxId = -1;
  for (const id of library.get_vocab().values()) if (id > maxId) maxId = id; // a spread of 150k ids overflows the stack
  const vocabSize = maxId + 1;
  return {
    dir,
    files,
    vocabSize,
    eosTokenId,
    padTokenId: library.pad_token_id ?? eosTokenId,
    bosTokenId: library.bos_token_id ?? undefined,
    encode: (text, options = {}) => library.encode(text, { add_special_tokens: options.addSpecialTokens ?? false }),
    // The library refuses an empty list; the empty string is its decoding.
    decode: (ids, options = {}) => (ids.length === 0 ? '' : library.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false })),
    applyChatTemplate: (messages, { addGenerationPrompt }) => {
      if (library.chat_template == null) throw new Error(`the tokenizer in ${dir} has no chat_template in tokenizer_config.json`);
      const rendered = library.apply_chat_template([...messages], { tokenize: false, add_generation_prompt: addGenerationPrompt });
      if (typeof rendered !== 'string') throw new Error(`Internal error: chat template of ${dir} rendered ${typeof rendered}, not a string`);
      return rendered;
    },
    tokenId: (token) => library.convert_tokens_to_ids(token) ?? undefined,
  };
}

/** Copies the tokenizer files of `dir` into `destDir` (created if missing); returns the names copied. */
export async function copyTokenizerFiles(dir: string, destDir: string): Promise<string[]> {
  const files = await checkTokenizerFolder(resolve(dir));
  await mkdir(destDir, { recursive: true });
  await Promise.all(files.map((name) => copyFile(join(dir, name), join(destDir, name))));
  return files;
}
