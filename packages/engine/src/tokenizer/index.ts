/**
 * `@lore-pipeline/engine/tokenizer`: text to token ids and back. `loadTokenizer` reads an HF
 * tokenizer folder (tokenizer.json, tokenizer_config.json) through transformers.js, loaded on the
 * first call; `trainBpeTokenizer` trains a byte-level BPE tokenizer (GPT-2 / Qwen2 layout) and
 * writes such a folder. Neither loads TensorFlow.js.
 */
export { REQUIRED_TOKENIZER_FILES, loadTokenizer, copyTokenizerFiles, type ChatMessage, type Tokenizer, type TokenizerLoadOptions } from './tokenizer.ts';
export { CHATML_TOKENS, CHATML_TEMPLATE, trainBpeTokenizer, type BpeTrainerOptions, type BpeTrainingProgress, type BpeTrainingResult } from './tokenizer-train.ts';
