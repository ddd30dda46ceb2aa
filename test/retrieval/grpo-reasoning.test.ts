/**
 * LREM stage 2 on a tiny untrained decoder: GRPO steps run end to end through the project's RL
 * machinery (sampling, the retrieval reward, group advantages, the clipped surrogate), change the
 * weights only when a group's rewards differ, and count the groups that did not.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import type { StageContext } from '../../pipeline/api.ts';
import { grpoOnReasoning } from '../../stages/embed/grpo.ts';
import type { Triplet } from '../../stages/embed/train.ts';
import { createModel, initEngine, presets, saveModel } from '#engine';
import { copyTokenizerFiles, loadTokenizer, trainBpeTokenizer } from '#engine/tokenizer';
import { loadPolicy, type Policy } from '../../stages/lib/judge/model.ts';
import { embedTexts } from '../../stages/lib/retrieval/embedding.ts';

let scratch: string;
let policy: Policy;
const items = ['usb c cable braided', 'hdmi cable 4k', 'wireless mouse', 'ventilation fan white', 'phone case silicone', 'laptop stand'];
const triplets: Triplet[] = [
  { query: 'usb cable', cot: '', positives: ['usb c cable braided'], hardNegatives: [] },
  { query: 'mouse', cot: '', positives: ['wireless mouse'], hardNegatives: [] },
];
const positiveRows = triplets.map((t) => t.positives.map((key) => items.indexOf(key)));

const logged: Record<string, number>[] = [];
const ctx = {
  signal: new AbortController().signal,
  log: { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} },
  metrics: { log: (_step: number, values: Record<string, number>) => logged.push(values) },
  progress: { update: () => {} },
} as unknown as StageContext<unknown>;

beforeAll(async () => {
  await initEngine({ backend: 'cpu' });
  scratch = mkdtempSync(join(tmpdir(), 'lrem-grpo-'));
  await trainBpeTokenizer([...items, 'usb cable', 'mouse', 'query: cable; constraints: usb'], { vocabSize: 300, extraTokens: ['<think>', '</think>'] }, join(scratch, 'tokenizer'));
  const tokenizer = await loadTokenizer(join(scratch, 'tokenizer'));
  const model = createModel(presets.tiny(tokenizer.vocabSize, { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 128 }), new Rng(5));
  await saveModel(model, join(scratch, 'model'), tokenizer);
  await copyTokenizerFiles(tokenizer.dir, join(scratch, 'model'));
  policy = (await loadPolicy(join(scratch, 'model'), { backend: 'cpu' } as never, ctx.log as never)).policy;
}, 120_000);

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Every parameter, flattened: what an update changes. */
const weights = async (p: Policy) => Float32Array.from((await Promise.all([...p.model.params.values()].map(async (v) => [...(await v.data())]))).flat());

describe('GRPO on the reasoning with a retrieval reward', () => {
  const options = {
    steps: 3,
    queries: 2,
    groupSize: 4,
    temperature: 1.5,
    learningRate: 1e-2,
    analysisTokens: 8,
    maxTokens: 32,
    reward: { kind: 'rank' as const, k: 2 },
    refreshEvery: 2,
    embedCatalog: () => embedTexts(policy.model, policy.tokenizer, items, { batchSize: 8, maxTokens: 32 }),
  };

  it('runs, rewards every sampled analysis in (0, 1], and updates the decoder when a group’s rewards differ', async () => {
    const before = await weights(policy);
    const summary = await grpoOnReasoning(ctx, policy, triplets, positiveRows, options, new Rng(7));
    expect(summary.steps).toBe(3);
    expect(summary.groups).toBe(6);
    expect(logged).toHaveLength(3);
    // Six items: the reciprocal rank of the relevant one is between 1/6 and 1.
    for (const step of logged) {
      expect(step.grpo_reward).toBeGreaterThanOrEqual(1 / 6);
      expect(step.grpo_reward).toBeLessThanOrEqual(1);
    }
    const after = await weights(policy);
    const changed = before.some((v, i) => v !== after[i]);
    // Weights move exactly when some group had a spread of rewards.
    expect(changed).toBe(summary.flatGroups < summary.groups);
  }, 120_000);
});
