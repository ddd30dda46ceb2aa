import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseCompletion, renderCompletion, type ReasoningSteps } from '../../stages/lib/relevance/completion.ts';
import { checkRewardSpec, closeRewards, loadRewards, rewardMean, scoreBatch, type LoadedReward, type RewardInput, type RewardValue } from '../../stages/lib/rl/rewards.ts';
import type { Grade } from '../../stages/lib/relevance/types.ts';

const repoRoot = new URL('../..', import.meta.url).pathname;
const fixtures = new URL('./fixtures/', import.meta.url).pathname;

const reference: ReasoningSteps = {
  query: { product: 'phone case', constraints: { compatibility: 'iphone 15' }, intent: 'protect phone' },
  item: { product: 'phone case', category: ['Electronics', 'Phone Accessories', 'Cases'], attributes: { compatibility: 'iphone 14' } },
  category: { relation: 'match', path: 'phone case is-a case' },
  attributes: { compatibility: 'conflict' },
  rules: ['R-COMPAT'],
};

function input(id: string, completion: string, gold: Grade = 'L2', rules = ['R-COMPAT']): RewardInput {
  return {
    id,
    prompt: 'p',
    completion,
    parsed: parseCompletion(completion),
    gold,
    meta: { capabilities: ['reasoning'], difficulty: 'hard', rules, source: 'world' },
    reference: { ...reference, rules },
  };
}

const perfect = renderCompletion(reference, 'L2');
const offByTwo = renderCompletion({ ...reference, attributes: { compatibility: 'match' }, rules: [] }, 'L4');
const broken = '<think>\nquery: phone case; constraints: none; intent: none\n<answer>L2</answer>';

describe('built-in rewards', () => {
  it('score format, exact label and label distance', async () => {
    const rewards = await loadRewards(
      [
        { use: 'format', weight: 1, with: {} },
        { use: 'label', weight: 1, with: {} },
        { use: 'label_distance', weight: 1, with: {} },
      ],
      repoRoot,
    );
    const scored = await scoreBatch(rewards, [input('a', perfect), input('b', offByTwo), input('c', broken)]);
    expect(scored.byReward.format).toEqual([1, 1, 0]);
    expect(scored.byReward.label).toEqual([1, 0, 1]); // c is malformed but answers L2
    // L4 against gold L2 is two grades away: 1 - 2/3.
    expect(scored.byReward.label_distance?.[1]).toBeCloseTo(1 / 3, 12);
    expect(scored.total[0]).toBe(3);
  });

  it('keeps the stepped rewards out of the outcome, unweighted per step, so stepwise advantages count them once', async () => {
    const rewards = await loadRewards(
      [
        { use: 'label', weight: 1, with: {} },
        { use: 'steps', weight: 0.5, with: { rule_weight: 2 } },
      ],
      repoRoot,
    );
    const scored = await scoreBatch(rewards, [input('a', perfect), input('b', offByTwo)]);
    // a: label 1, steps 1 -> total 1 + 0.5 = 1.5; outcome (label only) 1.
    // b: label 0 (L4 for gold L2), steps 3/6 -> total 0.25; outcome 0.
    expect(scored.total).toEqual([1.5, 0.25]);
    expect(scored.outcome).toEqual([1, 0]);
    expect(scored.stepped).toHaveLength(1);
    expect(scored.stepped[0]?.weight).toBe(0.5);
    // Unweighted: b's first three steps earn 1/6 each (weights 1, 1, 1, 1, 2 over 6).
    expect(scored.stepped[0]?.steps[1]).toEqual([1 / 6, 1 / 6, 1 / 6, 0, 0]);
  });

  it('steps: format-gated shares with the rules step weighted, and per-step values', async () => {
    const [steps] = await loadRewards([{ use: 'steps', weight: 1, with: { rule_weight: 2 } }], repoRoot);
    const scored = await scoreBatch([steps!], [input('a', perfect), input('b', offByTwo), input('c', broken)]);
    // Weights: query, item, category, attributes 1 each, rules 2 (rules fire): total 6.
    expect(scored.byReward.steps?.[0]).toBeCloseTo(1, 12);
    // b: attributes and rules are wrong: (1 + 1 + 1) / 6.
    expect(scored.byReward.steps?.[1]).toBeCloseTo(3 / 6, 12);
    expect(scored.stepped[0]?.steps[1]).toEqual([1 / 6, 1 / 6, 1 / 6, 0, 0]);
    // c: the query step verifies, but the format gate closes.
    expect(scored.byReward.steps?.[2]).toBe(0);
  });

  it('names the built-ins when a reward is unknown, and checks built-in params', async () => {
    await expect(loadRewards([{ use: 'lable', weight: 1, with: {} }], repoRoot)).rejects.toThrow(
      'unknown reward "lable": built-ins are format, label, label_distance, steps; a file path starts with ./',
    );
    await expect(loadRewards([{ use: 'steps', weight: 1, with: { rule_weight: -1 } }], repoRoot)).rejects.toThrow(
      'reward steps: bad params: rule_weight:',
    );
  });
});

describe('reward files', () => {
  it('loads the example reward; null leaves an example out of the mean and adds 0 to the total', async () => {
    const rewards = await loadRewards(
      [{ use: './examples/rewards/rule-citation.ts', weight: 0.5, with: { penalty: 0.5 } }],
      repoRoot,
    );
    expect(rewards[0]?.name).toBe('rule-citation');
    const batch = [input('a', perfect), input('b', offByTwo), input('n', perfect, 'L2', [])];
    const scored = await scoreBatch(rewards, batch);
    // a cites R-COMPAT: 1; b cites nothing: 0; n has no firing rule: null.
    expect(scored.byReward['rule-citation']).toEqual([1, 0, null]);
    expect(scored.total).toEqual([0.5, 0, 0]);
    expect(rewardMean(scored.byReward['rule-citation'] ?? [])).toBe(0.5);
  });

  it('a throw fails with the reward name and the example id', async () => {
    const rewards = await loadRewards([{ use: `${fixtures}throws-on-q2.ts`, weight: 1, with: {} }], repoRoot);
    await expect(scoreBatch(rewards, [input('q1', perfect), input('q2', perfect)])).rejects.toThrow(
      'reward throws-on-q2 failed on example q2: no price for this item',
    );
  });

  it('a module without a default function is refused by name', async () => {
    await expect(loadRewards([{ use: `${fixtures}not-a-function.ts`, weight: 1, with: {} }], repoRoot)).rejects.toThrow(
      "the module's default export must be a function",
    );
  });
});

describe('reward values', () => {
  // Values by example id, so a batch rerun one example at a time gets the same values.
  const returning = (name: string, values: Record<string, RewardValue>): LoadedReward => ({ name, weight: 1, params: {}, fn: (batch) => batch.map((x) => values[x.id] as RewardValue) });

  it('refuses NaN and infinite step rewards, naming the reward, the example and the step', async () => {
    const batch = [input('a', perfect), input('b', perfect)];
    await expect(scoreBatch([returning('shaped', { a: { total: 1, steps: [0.5, 0.5] }, b: { total: 1, steps: [0.5, Number.NaN] } })], batch)).rejects.toThrow(
      'reward shaped returned a non-finite value (NaN) at steps[1] for example b',
    );
    await expect(scoreBatch([returning('shaped', { a: { total: 1, steps: [Number.POSITIVE_INFINITY, 0] }, b: { total: 1, steps: [0, 1] } })], batch)).rejects.toThrow(
      'reward shaped returned a non-finite value (Infinity) at steps[0] for example a',
    );
    await expect(scoreBatch([returning('shaped', { a: { total: 1, steps: [0, 1] }, b: { total: Number.NEGATIVE_INFINITY, steps: [0, 1] } })], batch)).rejects.toThrow(
      'reward shaped returned a non-finite total (-Infinity) for example b',
    );
  });

  it('names a NaN result as NaN, not as the null JSON writes for it', async () => {
    const error = await scoreBatch([returning('ratio', { a: Number.NaN })], [input('a', perfect)]).catch((e: Error) => e);
    expect((error as Error).message).toContain('reward ratio returned NaN for example a');
    expect((error as Error).message).not.toContain('returned null');
  });
});

describe('reward files run in a worker', () => {
  const loaded: LoadedReward[][] = [];
  afterEach(async () => {
    await Promise.all(loaded.splice(0).map(closeRewards));
    delete process.env.REWARD_IMPORT_MARKER;
  });

  it('a reward that never returns is stopped by its timeout, naming the reward and its file', async () => {
    const file = `${fixtures}loops-forever.ts`;
    const rewards = await loadRewards([{ use: file, weight: 1, with: {}, timeout_s: 1 }], repoRoot);
    loaded.push(rewards);
    const started = performance.now();
    await expect(scoreBatch(rewards, [input('a', perfect), input('b', perfect)])).rejects.toThrow(
      `reward loops-forever (${file}) did not answer within 1 s on a batch of 2: it was stopped`,
    );
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it('cancelling the run stops a reward stuck in a loop (the main thread stays free to handle SIGINT)', async () => {
    const controller = new AbortController();
    const rewards = await loadRewards([{ use: `${fixtures}loops-forever.ts`, weight: 1, with: {} }], repoRoot, { signal: controller.signal });
    loaded.push(rewards);
    // Aborted by a timer on this thread: it fires only because the loop runs elsewhere.
    setTimeout(() => controller.abort(), 300);
    const started = performance.now();
    const error = await scoreBatch(rewards, [input('a', perfect)]).catch((e: Error) => e);
    expect((error as Error).name).toBe('AbortError');
    // Far below the default 60 s timeout: the cancel, not the timeout, ended it.
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it('cancelling the run stops a reward file whose import never ends', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 300);
    const started = performance.now();
    const error = await loadRewards([{ use: `${fixtures}loops-on-import.ts`, weight: 1, with: {} }], repoRoot, { signal: controller.signal }).catch((e: Error) => e);
    expect((error as Error).name).toBe('AbortError');
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it('a reward that kills its thread fails the call at once, naming the reward', async () => {
    const file = `${fixtures}throws-later.ts`;
    const rewards = await loadRewards([{ use: file, weight: 1, with: {} }], repoRoot);
    loaded.push(rewards);
    await expect(scoreBatch(rewards, [input('a', perfect)])).rejects.toThrow(`the worker running reward throws-later (${file}) crashed: late failure`);
  });

  it('validate checks a reward file without importing it; loading it for a run does import it', async () => {
    const marker = join(mkdtempSync(join(tmpdir(), 'reward-marker-')), 'imported');
    process.env.REWARD_IMPORT_MARKER = marker;
    const spec = { use: `${fixtures}marks-on-import.ts`, weight: 1, with: {} };
    await checkRewardSpec(spec, repoRoot);
    expect(existsSync(marker)).toBe(false);
    loaded.push(await loadRewards([spec], repoRoot));
    expect(existsSync(marker)).toBe(true);
  });

  it('validate reports a reward file that does not compile, located, and one without a default export', async () => {
    // Written at test time: a file that does not compile cannot live among the type-checked sources.
    const file = join(mkdtempSync(join(tmpdir(), 'reward-broken-')), 'does-not-compile.ts');
    writeFileSync(file, 'const reward = (batch: unknown[]) => batch.map(() => 1;\nexport default reward;\n');
    await expect(checkRewardSpec({ use: file, weight: 1, with: {} }, repoRoot)).rejects.toThrow(`reward ${file}: does not compile at ${file}:1:55: Expected ")" but found ";"`);
    const named = join(mkdtempSync(join(tmpdir(), 'reward-named-')), 'named-only.ts');
    writeFileSync(named, 'export const reward = (batch: unknown[]) => batch.map(() => 1);\n');
    await expect(checkRewardSpec({ use: named, weight: 1, with: {} }, repoRoot)).rejects.toThrow(`reward ${named}: the module has no default export`);
    await expect(checkRewardSpec({ use: './examples/rewards/rule-citation.ts', weight: 1, with: {} }, repoRoot)).resolves.toBeUndefined();
  });
});
