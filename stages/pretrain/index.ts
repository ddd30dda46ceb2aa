/**
 * pretrain: domain pretraining, LORE's knowledge phase. A causal-LM pass over the catalog's text
 * (every distinct item's title, attributes and description, of every split: the catalog is not a
 * label) and the train queries, before SFT, so a model trained from scratch learns the catalog's
 * language (its product words, brands, model codes) before it learns to judge. `sft` starts from
 * this checkpoint when it is in sft's `needs`.
 *
 * The tokenizer is trained here on the catalog text and the SFT set's text (prompts and
 * completions), so the one tokenizer serves both phases. Documents are shuffled per epoch with a
 * seed, joined with the end-of-text token and cut into `block_size` windows; the loss is on every
 * token. The batch order of an epoch is a pure function of (seed, epoch), so a resumed run ends
 * where an uninterrupted one ends. The loss curve is in metrics.jsonl (and the report).
 *
 *   pretrain:
 *     uses: pretrain
 *     needs: [data, cot]
 *     with: { epochs: 2, model: { num_hidden_layers: 2 } }
 */
import { join } from 'node:path';
import { z } from 'zod';
import { defineStage, Rng } from '../../pipeline/api.ts';
import { readSftSet } from '../lib/artifacts/sft-set.ts';
import { modelOverridesSchema } from '#engine/schema';
import { optimizerParams, RENAMED_PRETRAIN_PARAMS } from '../lib/judge/training-params.ts';
import type { Item, RelevanceExample } from '../lib/relevance/types.ts';

const params = z.strictObject({
  preset: z.enum(['tiny', 'small']).default('tiny').describe('Model shape: tiny ~1M, small ~10M parameters'),
  model: modelOverridesSchema
    .default({})
    .describe("Overrides of the preset's shape (HF config.json names); sft continues with this shape"),
  vocab_size: z.number().int().min(300).default(1024).describe('Tokenizer size'),
  drop_system_prompt: z.boolean().default(true).describe("Leave the SFT set's system messages out of the tokenizer's text (as sft's drop_system_prompt)"),
  block_size: z.number().int().min(8).default(128).describe('Tokens per training window'),
  max_length: z.number().int().positive().default(512).describe('Context length of the model (max_position_embeddings), as sft needs it'),
  epochs: z.number().positive().default(2).describe('Passes over the catalog text (fractions allowed)'),
  batch_size: z.number().int().positive().default(16).describe('Windows per step'),
  ...optimizerParams({ learning_rate: 3e-3, warmup_steps: 20, weight_decay: 0.1, checkpoint_every: 50 }),
});
type Params = z.output<typeof params>;

/** One document per distinct item text (title, attributes, description) and per distinct train query. */
export function catalogDocuments(splits: Record<'train' | 'dev' | 'test', readonly RelevanceExample[]>): string[] {
  const itemText = (item: Item) =>
    [item.title, item.category.join(' > '), Object.entries(item.attributes).map(([k, v]) => `${k}: ${v}`).join(', '), item.description ?? '', item.image_caption ?? '']
      .filter((part) => part !== '')
      .join('\n');
  // Distinct texts, not ids: an id seen with and without a description gives both texts.
  const documents = new Set((['train', 'dev', 'test'] as const).flatMap((split) => splits[split].map((e) => itemText(e.item))));
  for (const e of splits.train) documents.add(e.query);
  return [...documents].sort();
}

/** Joins the documents (in the given order) with `separator` and cuts the stream into windows of `blockSize`. */
export function packWindows(documents: readonly number[][], separator: number, blockSize: number): number[][] {
  const stream: number[] = [];
  for (const d of documents) stream.push(...d, separator);
  const windows: number[][] = [];
  for (let i = 0; i + 1 < stream.length; i += blockSize) windows.push(stream.slice(i, i + blockSize));
  return windows;
}

export default defineStage({
  name: 'pretrain',
  version: '2',
  description: "Domain pretraining: a causal LM over the catalog's text and the train queries (LORE's knowledge phase); sft can start from it",
  params,
  renamedParams: RENAMED_PRETRAIN_PARAMS,
  produces: 'checkpoint',
  resources: 'train',
  async run(ctx) {
    const p: Params = ctx.params;
    const engineLib = await import('#engine');
    const { loadTokenizer, copyTokenizerFiles, trainBpeTokenizer } = await import('#engine/tokenizer');
    const { readSplits } = await import('../lib/artifacts/dataset.ts');
    const checkpointFiles = await import('../lib/artifacts/checkpoint.ts');
    const engine = await engineLib.initEngine(ctx.engine, ctx.log);

    const documents = catalogDocuments(await readSplits(ctx.inputs.one('dataset').dir));
    const setDir = ctx.inputs.one('sft-set').dir;
    const sftSet = await readSftSet(setDir, 'train');
    const tokenizerDir = join(ctx.workDir, 'tokenizer');
    const sftTexts = sftSet.flatMap((r) => [...r.messages.filter((m) => !p.drop_system_prompt || m.role !== 'system').map((m) => m.content), r.completion]);
    const trained = await trainBpeTokenizer([...documents, ...sftTexts], { vocabSize: p.vocab_size, extraTokens: ['<think>', '</think>', '<answer>', '</answer>'] }, tokenizerDir);
    ctx.log.info(`tokenizer: ${JSON.stringify(trained)}`);
    const tokenizer = await loadTokenizer(tokenizerDir);
    const encoded = documents.map((d) => tokenizer.encode(d));

    const model = engineLib.createModel(engineLib.presets[p.preset](tokenizer.vocabSize, { max_position_embeddings: p.max_length, ...p.model }), new Rng(ctx.seed, 'engine/init'));
    ctx.log.info(`model: ${engineLib.parameterCount(model)} parameters; ${documents.length} documents`);
    const optimizer = new engineLib.AdamW(model.params, engineLib.adamWOptionsSchema.parse({ weight_decay: p.weight_decay }));
    // The window count is the same every epoch (the stream's length does not depend on the order).
    const epochWindows = (epoch: number) => {
      const order = new Rng(ctx.seed, `pretrain/epoch-${epoch}`).shuffle(encoded.map((_, i) => i));
      return packWindows(order.map((i) => encoded[i] as number[]), tokenizer.eosTokenId, p.block_size);
    };
    const stepsPerEpoch = Math.ceil(epochWindows(0).length / p.batch_size);
    const totalSteps = Math.max(1, Math.round(stepsPerEpoch * p.epochs));
    const { causalLmSteps, epochReader, runTrainingLoop } = await import('../lib/judge/training.ts');
    const ranks = engineLib.resolveRanks(ctx.engine.data_parallel, engine.backend);
    const readEpoch = epochReader(stepsPerEpoch, epochWindows);
    const step = await runTrainingLoop(ctx, {
      model,
      optimizer,
      settings: p,
      totalSteps,
      stepsPerEpoch,
      batch(step) {
        const { data: windows, index } = readEpoch(step);
        const batch = windows.slice(index * p.batch_size, (index + 1) * p.batch_size).map((ids) => ({ ids, lossMask: ids.map(() => 1) }));
        return [engineLib.padBatch(batch, tokenizer.padTokenId)];
      },
      ...causalLmSteps(model, optimizer, { ranks, engine: ctx.engine }),
    });
    await engineLib.saveModel(model, ctx.outDir, tokenizer);
    await copyTokenizerFiles(tokenizer.dir, ctx.outDir);
    await checkpointFiles.writeCompletionFormat(ctx.outDir, { ...(await checkpointFiles.readCompletionFormat(setDir)), dropSystemPrompt: p.drop_system_prompt });
    const parameters = engineLib.parameterCount(model);
    optimizer.dispose();
    engineLib.disposeModel(model);
    return {
      engine,
      metrics: { steps: step, documents: documents.length, windows_per_epoch: epochWindows(0).length, parameters },
    };
  },
});
