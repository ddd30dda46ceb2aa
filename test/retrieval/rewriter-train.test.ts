/**
 * BEQUE's rewriter training on a tiny decoder: the SFT phase teaches it the kept rewrite (its greedy
 * rewrite of the query becomes that rewrite, which it was not before), and the partial-order phase
 * raises the chosen rewrite's log-probability over the rejected one's relative to the reference
 * (the DPO margin grows from 0).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import { createModel, initEngine, presets, saveModel, sequenceLogprobs } from '#engine';
import { copyTokenizerFiles, loadTokenizer, trainBpeTokenizer } from '#engine/tokenizer';
import { loadPolicy, releasePolicy, type Policy } from '../../stages/lib/judge/model.ts';
import { rewritePrompt } from '../../stages/lib/retrieval/rewrite.ts';
import rewriteStage from '../../stages/rewrite/index.ts';
import { generateRewrites } from '../../stages/lib/retrieval/rewrite.ts';
import { trainRewriter } from '../../stages/rewrite/train.ts';
import { testContext } from '../data/context.ts';

let scratch: string;
const silent = { info: () => {}, warn: () => {}, debug: () => {} };
const query = 'household ventilation fans';

async function tinyPolicy(): Promise<Policy> {
  return (await loadPolicy(join(scratch, 'model'), { backend: 'cpu', inference: 'tfjs' }, silent)).policy;
}

beforeAll(async () => {
  await initEngine({ backend: 'cpu' });
  scratch = mkdtempSync(join(tmpdir(), 'rewriter-train-'));
  const texts = [rewritePrompt(query), 'ventilation fan\n', 'household fans\n', 'usb c cable braided', 'hdmi cable 4k', 'wireless mouse'];
  await trainBpeTokenizer(texts, { vocabSize: 300, extraTokens: ['<think>', '</think>'] }, join(scratch, 'tokenizer'));
  const tokenizer = await loadTokenizer(join(scratch, 'tokenizer'));
  const model = createModel(presets.tiny(tokenizer.vocabSize, { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64 }), new Rng(5));
  await saveModel(model, join(scratch, 'model'), tokenizer);
  await copyTokenizerFiles(tokenizer.dir, join(scratch, 'model'));
}, 120_000);

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const options = { sftSteps: 0, dpoSteps: 0, batchSize: 4, learningRate: 1e-2, beta: 0.5 };

describe('the BEQUE rewriter trains', () => {
  it('SFT on a kept rewrite makes it the greedy rewrite of its query', async () => {
    const policy = await tinyPolicy();
    const rng = new Rng(1);
    const [before] = await generateRewrites(policy, [query], { maxNewTokens: 8, rng });
    expect(before).not.toBe('ventilation fan');
    const ctx = testContext(rewriteStage, {});
    const figures = await trainRewriter(ctx, policy, [{ query, rewrite: 'ventilation fan' }], [], { ...options, sftSteps: 40 }, new Rng(2));
    expect(figures.sft_steps).toBe(40);
    expect(figures.dpo_steps).toBe(0);
    expect(figures.sft_last_loss!).toBeLessThan(figures.sft_first_loss! / 4);
    const [after] = await generateRewrites(policy, [query], { maxNewTokens: 8, rng });
    expect(after).toBe('ventilation fan');
    await releasePolicy(policy);
  }, 120_000);

  it('the partial-order phase raises the chosen rewrite over the rejected one', async () => {
    const policy = await tinyPolicy();
    const { tokenizer, model } = policy;
    const row = (rewrite: string) => ({ prompt: tokenizer.encode(rewritePrompt(query)), completion: [...tokenizer.encode(`${rewrite}\n`), tokenizer.eosTokenId] });
    const margin = async () => {
      const { logprobs, mask } = sequenceLogprobs(model, [row('ventilation fan'), row('household fans')]);
      const values = (await logprobs.array()) as number[][];
      tf.dispose([logprobs, mask]);
      const sum = (row: number[]) => row.reduce((a, b) => a + b, 0);
      return sum(values[0] as number[]) - sum(values[1] as number[]);
    };
    const before = await margin();
    const ctx = testContext(rewriteStage, {});
    const figures = await trainRewriter(ctx, policy, [], [{ query, chosen: 'ventilation fan', rejected: 'household fans' }], { ...options, sftSteps: 40, dpoSteps: 10 }, new Rng(3));
    // No kept rewrite: the SFT phase is skipped, whatever its steps.
    expect(figures.sft_steps).toBe(0);
    expect(figures.dpo_steps).toBe(10);
    expect(figures['dpo_rewards/accuracies']).toBe(1);
    expect(await margin()).toBeGreaterThan(before + 1);
    await releasePolicy(policy);
  }, 120_000);
});
