// Test stage: an untrained checkpoint small enough to decode in a test (1 layer, d 32) with a BPE
// tokenizer trained on the prompts, so eval's generation, parsing and metrics paths all run.
// Its completions are garbage; the metrics are checked for consistency, not quality.
import path from 'node:path';
import { z } from 'zod';
import { defineStage } from '../../../pipeline/stage-api.ts';

export default defineStage({
  name: 'tiny-checkpoint',
  version: '1',
  description: 'untrained 1-layer checkpoint for eval tests',
  params: z.strictObject({ answer_first: z.boolean().default(false).describe('completion format of the checkpoint') }),
  produces: 'checkpoint',
  resources: 'light',
  async run(ctx) {
    const engine = await import('#engine');
    const { trainBpeTokenizer, loadTokenizer, copyTokenizerFiles } = await import('#engine/tokenizer');
    const { writeCompletionFormat } = await import('../../../stages/lib/artifacts/checkpoint.ts');
    const { readJsonl } = await import('../../../stages/lib/io/jsonl.ts');
    const record = await engine.initEngine(ctx.engine, ctx.log);
    const prompts = await readJsonl<{ messages: { content: string }[] }>(path.join(ctx.inputs.one('prompts').dir, 'train.jsonl'));
    const texts = prompts.flatMap((p) => p.messages.map((m) => m.content));
    const tokenizerDir = path.join(ctx.workDir, 'tokenizer');
    await trainBpeTokenizer(texts, { vocabSize: 600, extraTokens: ['<think>', '</think>', '<answer>', '</answer>'] }, tokenizerDir);
    const tokenizer = await loadTokenizer(tokenizerDir);
    const config = engine.presets.tiny(tokenizer.vocabSize, {
      hidden_size: 32,
      intermediate_size: 64,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      num_key_value_heads: 1,
      max_position_embeddings: 4096,
    });
    const model = engine.createModel(config, ctx.rng);
    await engine.saveModel(model, ctx.outDir, tokenizer);
    await copyTokenizerFiles(tokenizer.dir, ctx.outDir);
    await writeCompletionFormat(ctx.outDir, { answerFirst: ctx.params.answer_first, dropSystemPrompt: true });
    engine.disposeModel(model);
    return { engine: record };
  },
});
