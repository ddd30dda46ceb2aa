import { describe, expect, it } from 'vitest';
import { DynamicBatcher } from '../../stages/lib/serving/batcher.ts';
import { chooseMinConfidence, chooseRoute, deploymentProblem, type Deployment, type DevPair } from '../../stages/lib/serving/deployment.ts';
import { keyPath } from '../../stages/lib/serving/server.ts';

describe('routing threshold chosen on dev', () => {
  // Acc@2 of the LLM alone: all four right (L4, L1, L3, L2 against golds L4, L1, L3, L2) = 1.
  const dev: DevPair[] = [
    { gold: 'L4', cached: false, tier: 'tail', llm: 'L4', distilled: 'L4', confidence: 0.9 },
    { gold: 'L1', cached: false, tier: 'tail', llm: 'L1', distilled: 'L4', confidence: 0.4 },
    { gold: 'L3', cached: false, tier: 'tail', llm: 'L3', distilled: 'L3', confidence: 0.6 },
    { gold: 'L2', cached: true, tier: 'head', llm: 'L2', distilled: 'L4', confidence: 0.3 },
  ];

  it('takes the lowest threshold that keeps Acc@2 within the tolerance of the LLM', () => {
    // Dev confidences 0.3, 0.4, 0.6, 0.9: candidates 0, 0.35, 0.5, 0.75 (midpoints) and 1.
    // τ = 0 and 0.35 keep pair 2 (0.4) with the distilled model (L4 for an L1: wrong), Acc@2 3/4 < 1 − 0.02.
    // τ = 0.5 sends pair 2 to the LLM (right): 4/4. Pair 4 is cached (the LLM's answer) at any τ.
    expect(chooseMinConfidence(dev, ['head', 'torso', 'tail', 'new'], 0.02)).toEqual({
      minConfidence: 0.5,
      llmTiers: ['head', 'torso', 'tail', 'new'],
      devPairs: 4,
      devLlmAcc2: 1,
      devTieredAcc2: 1,
      devLlmShare: 0.25,
      tolerance: 0.02,
    });
    // With a 0.3 tolerance, 3/4 is close enough with no pair to the LLM: τ = 0.
    expect(chooseMinConfidence(dev, ['head', 'torso', 'tail', 'new'], 0.3)).toMatchObject({ minConfidence: 0, devTieredAcc2: 0.75, devLlmShare: 0 });
  });

  it('says so when the tiers that may reach the LLM cannot meet the tolerance', () => {
    // No tail pair may reach the LLM: every τ gives 3/4, so it ends at τ = 1 with that figure.
    expect(chooseMinConfidence(dev, ['head', 'new'], 0.02)).toMatchObject({ minConfidence: 1, devTieredAcc2: 0.75, devLlmShare: 0 });
  });
});

describe('frequency cutoff and threshold chosen together on dev', () => {
  it('keeps the tiers where the LLM does not help with the distilled model', () => {
    // LLM alone: right on p1, p3, p4, wrong on p2 (L4 for an L1): Acc@2 3/4. Tolerance 0.
    const dev: DevPair[] = [
      { gold: 'L4', cached: false, tier: 'new', llm: 'L4', distilled: 'L1', confidence: 0.3 },
      { gold: 'L1', cached: false, tier: 'head', llm: 'L4', distilled: 'L1', confidence: 0.2 },
      { gold: 'L3', cached: false, tier: 'tail', llm: 'L3', distilled: 'L3', confidence: 0.9 },
      { gold: 'L2', cached: false, tier: 'torso', llm: 'L2', distilled: 'L4', confidence: 0.4 },
    ];
    // Candidates 0, 0.25, 0.35, 0.65, 1. Distilled alone: 2/4.
    // Cutoffs new / new+tail / new+tail+torso: τ = 0.35 sends p1 to the LLM: 3/4, 1 pair of 4.
    // (new+tail+torso does not reach p4 before τ = 0.65, so it ties with the narrower two.)
    // All tiers: τ = 0.35 also sends p2 (wrong): 2/4; τ = 0.65 adds p4: 3/4 with 3 pairs of 4.
    // Fewest LLM pairs: 1 of 4, tied three ways at Acc@2 3/4: the widest, new+tail+torso.
    const choice = chooseRoute(dev, 0);
    expect(choice).toMatchObject({ llmTiers: ['new', 'tail', 'torso'], devPairs: 4, devLlmAcc2: 0.75, devTieredAcc2: 0.75, devLlmShare: 0.25, tolerance: 0 });
    expect(choice.minConfidence).toBeCloseTo(0.35, 12);
  });
});

describe('dynamic batching', () => {
  it('fills batches up to maxBatch, runs one at a time, and waits at most maxWait for a batch to fill', async () => {
    const sizes: number[] = [];
    const batcher = new DynamicBatcher<number, number>(
      async (xs) => {
        sizes.push(xs.length);
        return xs.map((x) => x * 2);
      },
      { maxBatch: 3, maxWaitMs: 20, queueLimit: 10 },
    );
    const outcomes = await Promise.all([1, 2, 3, 4, 5].map((x) => batcher.submit(x, 5000)));
    expect(outcomes).toEqual([1, 2, 3, 4, 5].map((x) => ({ value: x * 2 })));
    expect(sizes).toEqual([3, 2]);
    const started = performance.now();
    expect(await batcher.submit(7, 5000)).toEqual({ value: 14 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(15); // a lone pair waits for company
  });

  it('answers timedOut at the deadline, refuses past the queue limit, and reports run errors', async () => {
    const slow = new DynamicBatcher<number, number>(async (xs) => new Promise((r) => setTimeout(() => r(xs), 200)), { maxBatch: 1, maxWaitMs: 0, queueLimit: 1 });
    const first = slow.submit(1, 10);
    expect(slow.canAccept(1)).toBe(true); // the first is running, not queued
    const second = slow.submit(2, 5000);
    expect(slow.canAccept(1)).toBe(false);
    expect(slow.retryAfterSeconds()).toBeGreaterThanOrEqual(1);
    expect(await first).toEqual({ timedOut: true });
    expect(await second).toEqual({ value: 2 });
    await slow.drain();
    const failing = new DynamicBatcher<number, number>(async () => Promise.reject(new Error('worker died')), { maxBatch: 2, maxWaitMs: 0, queueLimit: 4 });
    expect(await failing.submit(1, 1000)).toEqual({ error: new Error('worker died') });
  });
});

describe('key paths in 400 answers', () => {
  it('reads JSON pointers as the keys a user wrote', () => {
    expect(keyPath('/items/0/title')).toBe('items[0].title');
    expect(keyPath('', 'query')).toBe('query');
    expect(keyPath('/items/2/attributes', 'size')).toBe('items[2].attributes.size');
  });
});

describe('deployment.json checks', () => {
  const deployment: Deployment = {
    format: 'lore-deployment/1',
    inputs: { checkpoint: 'a', distilled: 'b', dataset: 'c', kg: 'd', prompts: 'e' },
    cache: { kind: 'sqlite', file: 'cache.sqlite', entries: 0 },
    route: { minConfidence: 0.5, llmTiers: ['new'], tuning: null },
    llm: { maxNewTokens: 160, grade: 'median', lexicalPool: 0.25, maxBatch: 8, maxWaitMs: 10, deadlineMs: 2000, queueLimit: 256 },
  };
  const withLlm = (llm: Record<string, unknown>) => ({ ...deployment, llm: { ...deployment.llm, ...llm } });

  it('accepts a pooled judge, and one without the pool', () => {
    expect(deploymentProblem(deployment)).toBeUndefined();
    const { lexicalPool: _, ...unpooled } = deployment.llm;
    expect(deploymentProblem({ ...deployment, llm: unpooled })).toBeUndefined();
  });

  it('names the key of a bad grade reading or pool weight', () => {
    expect(deploymentProblem(withLlm({ lexicalPool: 1.5 }))).toBe('llm.lexicalPool: expected a number from 0 to 1, got 1.5');
    expect(deploymentProblem(withLlm({ lexicalPool: '0.25' }))).toBe('llm.lexicalPool: expected a number from 0 to 1, got "0.25"');
    expect(deploymentProblem(withLlm({ grade: 'mean' }))).toBe('llm.grade: expected one of answer, median, got "mean"');
  });
});
