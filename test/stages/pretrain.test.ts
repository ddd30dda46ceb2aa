/**
 * The pretrain stage on a tiny catalog: its documents and windows, a resumed run that ends with the
 * weights of an uninterrupted one, and sft starting from its checkpoint.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stepCheckpoints } from '../../pipeline/executor/checkpoints.ts';
import pretrainStage, { catalogDocuments, packWindows } from '../../stages/pretrain/index.ts';
import sftStage from '../../stages/sft/index.ts';
import { writeSplits } from '../../stages/lib/artifacts/dataset.ts';
import { writeJsonl } from '../../stages/lib/io/jsonl.ts';
import type { Grade, RelevanceExample } from '../../stages/lib/relevance/types.ts';
import { testContext } from '../data/context.ts';
import { tempDir } from '../pipeline/cli-helpers.ts';

const { dir, remove } = tempDir('pretrain-');
afterAll(remove);

const example = (id: string, query: string, title: string, label: Grade, description?: string): RelevanceExample => ({
  id,
  query,
  item: { id: title, title, category: [], attributes: {}, ...(description ? { description } : {}) },
  label,
  meta: { capabilities: [], difficulty: 'medium', rules: [], source: 'fixture' },
});
const splits = {
  train: [
    example('a', 'phone case', 'EF-100 Silicone Case', 'L4', 'a slim case'),
    example('b', 'phone case', 'Zento Speaker', 'L1'),
    example('c', 'speaker', 'Zento Speaker', 'L4'),
  ],
  dev: [example('d', 'usb cable', 'USB-C Cable 1m', 'L4')],
  test: [example('e', 'hdmi', 'EF-100 Silicone Case', 'L1')],
};

describe('pretrain documents', () => {
  it('has one document per distinct item of every split and per distinct train query, never a dev or test query', () => {
    // "EF-100 Silicone Case" is seen with a description (train) and without (test): two texts.
    expect(catalogDocuments(splits)).toEqual(['EF-100 Silicone Case', 'EF-100 Silicone Case\na slim case', 'USB-C Cable 1m', 'Zento Speaker', 'phone case', 'speaker']);
  });

  it('joins documents with the separator and cuts windows of block_size', () => {
    // Stream: 1 2 9 3 9 4 5 6 9 (9 separates); windows of 4; the last, one token long, has no
    // next token to predict and is dropped.
    expect(packWindows([[1, 2], [3], [4, 5, 6]], 9, 4)).toEqual([[1, 2, 9, 3], [9, 4, 5, 6]]);
  });
});

describe('pretrain stage', () => {
  const datasetDir = path.join(dir, 'dataset');
  const setDir = path.join(dir, 'sft-set');
  const sftRecord = (e: RelevanceExample) => ({
    id: e.id,
    messages: [{ role: 'user', content: `Query: ${e.query}\nItem title: ${e.item.title}` }],
    completion: `<think>\nquery: x; constraints: none; intent: none\n</think>\n<answer>${e.label}</answer>`,
    example: e,
    round: 'gold',
  });
  const params = {
    vocab_size: 300,
    model: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 },
    block_size: 16,
    max_length: 128,
    epochs: 3,
    batch_size: 2,
    checkpoint_every: 1,
    warmup_steps: 1,
  };
  const inputs = () => [
    { stage: 'data', kind: 'dataset' as const, dir: datasetDir },
    { stage: 'cot', kind: 'sft-set' as const, dir: setDir },
  ];
  const run = async (workDir: string, stopAfter?: number) => {
    const ctx = testContext(pretrainStage, { params, inputs: inputs(), configDir: dir, seed: 5 });
    const controller = new AbortController();
    const losses: number[] = [];
    Object.assign(ctx, {
      engine: { backend: 'wasm' },
      workDir,
      checkpoints: stepCheckpoints(workDir),
      signal: controller.signal,
      metrics: {
        log: (step: number, values: { loss: number }) => {
          losses.push(values.loss);
          if (step === stopAfter) controller.abort();
        },
      },
    });
    const result = (await pretrainStage.run(ctx as never)) as { metrics: Record<string, number> };
    return { outDir: ctx.outDir, weights: readFileSync(path.join(ctx.outDir, 'model.safetensors')), metrics: result.metrics, logs: ctx.logs, losses };
  };

  it('resumed from a step checkpoint ends with the weights of an uninterrupted run, and sft starts from it', async () => {
    mkdirSync(datasetDir, { recursive: true });
    mkdirSync(setDir, { recursive: true });
    await writeSplits(datasetDir, splits);
    await writeJsonl(path.join(setDir, 'train.jsonl'), splits.train.map(sftRecord));
    await writeJsonl(path.join(setDir, 'dev.jsonl'), []);

    const whole = await run(path.join(dir, 'work-whole'));
    // 5 documents, a few windows of 16 tokens, 2 per step, 3 epochs: at least 3 steps.
    expect(whole.metrics.steps).toBeGreaterThanOrEqual(3);
    expect(whole.losses).toHaveLength(whole.metrics.steps!);
    const resumedWork = path.join(dir, 'work-resumed');
    await expect(run(resumedWork, 2)).rejects.toThrow();
    const resumed = await run(resumedWork);
    expect(resumed.logs).toContain('info: resumed from step 2');
    expect(resumed.weights.equals(whole.weights)).toBe(true);
    expect(resumed.metrics).toEqual(whole.metrics);

    // sft with the pretrain checkpoint in needs starts from it: its tokenizer, its shape.
    const sft = testContext(sftStage, {
      params: { drop_system_prompt: true, max_steps: 1, batch_size: 2, eval_prompts: 0, max_length: 128 },
      inputs: [
        { stage: 'cot', kind: 'sft-set' as const, dir: setDir },
        { stage: 'pretrain', kind: 'checkpoint' as const, dir: whole.outDir },
      ],
      configDir: dir,
      seed: 5,
    });
    Object.assign(sft, { engine: { backend: 'wasm' } });
    const sftResult = (await sftStage.run(sft as never)) as { metrics: Record<string, number> };
    expect(readFileSync(path.join(sft.outDir, 'tokenizer.json'), 'utf8')).toBe(readFileSync(path.join(whole.outDir, 'tokenizer.json'), 'utf8'));
    expect(sftResult.metrics.parameters).toBe(whole.metrics.parameters);
  }, 300_000);
});
