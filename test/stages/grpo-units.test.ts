import { describe, expect, it } from 'vitest';
import { renderCompletion, STEP_NAMES } from '../../stages/lib/relevance/completion.ts';
import { groupsToReplay, hintedMessages, tieredPromptSource, withoutContext, type Group, type Rollout } from '../../stages/grpo/rollout.ts';
import { collectGroups, passingGroups, type RollRound } from '../../stages/grpo/step.ts';
import { truncatedRatios } from '../../stages/grpo/update.ts';
import { grpoSteps } from '../../stages/grpo/train.ts';
import { Rng } from '../../pipeline/rng.ts';
import grpoStage from '../../stages/grpo/index.ts';
import { stepSpans, tokenStepIndices } from '../../stages/grpo/token-steps.ts';
import type { PromptRecord } from '../../stages/lib/relevance/prompts.ts';

const COMPLETION = renderCompletion(
  {
    query: { product: 'boots', constraints: { gender: 'men' }, intent: '' },
    item: { product: 'boots', category: ['Shoes'], attributes: { gender: 'women' } },
    category: { relation: 'match', path: '' },
    attributes: { gender: 'conflict' },
    rules: ['R-GENDER'],
  },
  'L2',
);

/** A character-level "tokenizer": token i is the char code, so token positions are char positions. */
const charTokens = (text: string) => [...text].map((c) => c.charCodeAt(0));
const decodeChars = (ids: number[]) => String.fromCharCode(...ids);

describe('token -> reasoning step mapping', () => {
  it('finds the five step lines inside <think>, in order', () => {
    const spans = stepSpans(COMPLETION);
    expect(spans.map((s) => s.step)).toEqual([0, 1, 2, 3, 4]);
    // Each span is exactly its line with the newline: the text it covers starts with the step name.
    spans.forEach((s) => expect(COMPLETION.slice(s.start, s.end)).toMatch(new RegExp(`^${STEP_NAMES[s.step]}: .*\\n$`)));
  });

  it('gives each token the step of the line it starts in, and K outside every step', () => {
    const tokens = charTokens(COMPLETION);
    const steps = tokenStepIndices(tokens, decodeChars);
    const at = (needle: string) => steps[COMPLETION.indexOf(needle)];
    expect(at('<think>')).toBe(5);
    expect(at('query:')).toBe(0);
    expect(at('item:')).toBe(1);
    expect(at('category: match')).toBe(2);
    expect(at('attributes: gender: conflict')).toBe(3);
    expect(at('R-GENDER')).toBe(4);
    expect(at('<answer>')).toBe(5);
    // Every character of the rules line (including its newline) maps to step 4: "rules: R-GENDER\n" is 16.
    expect(steps.filter((s) => s === 4)).toHaveLength('rules: R-GENDER\n'.length);
  });

  it('places a multi-character token by its first character', () => {
    // Tokens: "<think>\n", "query: a; constraints: none; intent: none\n", "</think>" as three tokens.
    const pieces = ['<think>\n', 'query: a; constraints: none; intent: none\n', '</think>'];
    const decode = (ids: number[]) => ids.map((i) => pieces[i]).join('');
    expect(tokenStepIndices([0, 1, 2], decode)).toEqual([5, 0, 5]);
  });

  it('maps everything to the outcome index when there is no <think> block', () => {
    expect(tokenStepIndices(charTokens('<answer>L3</answer>'), decodeChars).every((s) => s === 5)).toBe(true);
  });
});

describe('adaptive guided replay', () => {
  it('picks groups below the threshold, least accurate first, at most share of the batch', () => {
    // 8 groups, share 0.25 -> at most 2; below 0.5 are groups 1 (0.25), 3 (0), 6 (0.25) -> 3, then 1.
    expect(groupsToReplay([1, 0.25, 0.75, 0, 0.5, 1, 0.25, 0.5], 0.5, 0.25)).toEqual([3, 1]);
    // At least one group when any qualifies, even if share x groups rounds to 0.
    expect(groupsToReplay([0, 1], 0.5, 0.1)).toEqual([0]);
    expect(groupsToReplay([0, 0], 0, 1)).toEqual([]);
  });

  it('adds the gold grade and the deciding rules to the user turn only', () => {
    const record = {
      id: 'q1-i1',
      messages: [
        { role: 'system', content: 'You judge relevance.' },
        { role: 'user', content: 'Query: boots men' },
      ],
      example: { id: 'q1-i1', query: 'boots men', item: { title: 't', category: [], attributes: {} }, label: 'L2', meta: { capabilities: [], difficulty: 'easy', rules: ['R-GENDER'], source: 'world' } },
      facts: [],
    } as PromptRecord;
    const hinted = hintedMessages(record);
    expect(hinted[0]).toEqual(record.messages[0]);
    expect(hinted[1]?.content).toBe('Query: boots men\nHint: the correct grade is L2; the deciding rules are R-GENDER.');
  });
});

/** A prompt record with id `id` and difficulty `difficulty`, for the prompt-source and filter tests. */
function record(id: string, difficulty: 'easy' | 'medium' | 'hard' = 'easy', user = 'Judge this pair.\nQuery: q'): PromptRecord {
  return {
    id,
    messages: [
      { role: 'system', content: 'You judge relevance.' },
      { role: 'user', content: user },
    ],
    example: { id, query: 'q', item: { title: 't', category: [], attributes: {} }, label: 'L2', meta: { capabilities: [], difficulty, rules: [], source: 'world' } },
    facts: [],
  } as unknown as PromptRecord;
}

/** A group whose rollouts are right or wrong as `verdicts` says, each with `reasoning` as its <think> text. */
function group(id: string, verdicts: boolean[], reasoning: string[] = verdicts.map((_, i) => `path ${i}`)): Group {
  return {
    record: record(id),
    rollouts: verdicts.map((correct, i) => ({ correct, kind: 'policy', completion: { text: `<think>\n${reasoning[i]}\n</think>` } }) as unknown as Rollout),
  };
}

describe('DyKnow context groups', () => {
  it('removes the leading knowledge block from the user turn only', () => {
    const withFacts = record('a', 'easy', 'Knowledge:\n- boots is-a Shoes\n- acme brand-of boots\n\nJudge this pair.\nQuery: boots');
    const plain = withoutContext(withFacts);
    expect(plain[0]).toEqual(withFacts.messages[0]);
    expect(plain[1]?.content).toBe('Judge this pair.\nQuery: boots');
    // No block: unchanged.
    expect(withoutContext(record('b'))[1]?.content).toBe('Judge this pair.\nQuery: q');
  });
});

describe('prompt source with curriculum tiers', () => {
  const easy = ['e1', 'e2', 'e3', 'e4'].map((id) => record(id, 'easy'));
  const hard = ['h1', 'h2', 'h3', 'h4'].map((id) => record(id, 'hard'));
  const source = tieredPromptSource(
    [
      { prompts: easy, steps: 2 },
      { prompts: hard, steps: 2 },
    ],
    2,
    new Rng(5, 'grpo'),
  );
  const ids = (rs: PromptRecord[]) => rs.map((r) => r.id);

  it('draws the tiers in order, an epoch of each tier over its steps', () => {
    // Steps 0-1 are tier 0 (2 prompts each, one epoch of 4 easy prompts), steps 2-3 tier 1.
    const tier0 = [...ids(source(0, 0, 2, new Set())), ...ids(source(1, 0, 2, new Set()))];
    expect([...tier0].sort()).toEqual(['e1', 'e2', 'e3', 'e4']);
    const tier1 = [...ids(source(2, 0, 2, new Set())), ...ids(source(3, 0, 2, new Set()))];
    expect([...tier1].sort()).toEqual(['h1', 'h2', 'h3', 'h4']);
    // Past the last tier's steps the last tier goes on.
    expect(ids(source(9, 0, 2, new Set())).every((id) => id.startsWith('h'))).toBe(true);
  });

  it('refills from the tier without the prompts already drawn, the same way every time', () => {
    const first = source(0, 0, 2, new Set());
    const used = new Set(ids(first));
    const refill = source(0, 1, 2, used);
    expect(refill).toHaveLength(2);
    expect(ids(refill).some((id) => used.has(id))).toBe(false);
    expect(ids(source(0, 1, 2, used))).toEqual(ids(refill));
  });
});

describe('prompt source balanced by grade (the RL pool\'s grade_balance)', () => {
  // A skewed pool: 800 L4 and 200 L1 prompts. Under temper 0.5, cap 4: w(L4) = 1, w(L1) =
  // (0.8 / 0.2)^0.5 = 2, so a draw favouring the rare grade the way SFT's epochs do holds
  // 200 x 2 / (800 + 200 x 2) = 1/3 L1 rather than the pool's 1/5 (grade-balance.ts).
  const pool = Array.from({ length: 1000 }, (_, i) => ({ ...record(`p${i}`), example: { ...record(`p${i}`).example, label: i % 5 === 0 ? ('L1' as const) : ('L4' as const) } }));
  const balance = { temper: 0.5, cap: 4 };
  const l1Share = (draws: PromptRecord[]) => draws.filter((r) => r.example.label === 'L1').length / draws.length;
  // The first 10 steps of 8 prompts (0.08 of an epoch, like chorus.yaml's 0.1) under 20 seeds.
  const firstSteps = (b?: typeof balance) =>
    Array.from({ length: 20 }, (_, seed) => tieredPromptSource([{ prompts: pool, steps: 1 }], 8, new Rng(seed, 'grpo'), b)).flatMap((source) =>
      Array.from({ length: 10 }, (_, step) => source(step, 0, 8, new Set())).flat(),
    );

  it('draws the rare grade at its balanced share, and at the pool\'s share without balance', () => {
    // 1,600 draws: the share's standard error is about 0.012, so +-0.04 is over three of them.
    expect(l1Share(firstSteps(balance))).toBeGreaterThan(1 / 3 - 0.04);
    expect(l1Share(firstSteps(balance))).toBeLessThan(1 / 3 + 0.04);
    expect(l1Share(firstSteps())).toBeGreaterThan(0.2 - 0.04);
    expect(l1Share(firstSteps())).toBeLessThan(0.2 + 0.04);
  });

  it('still visits every prompt once an epoch, and refills balanced without the prompts already drawn', () => {
    const source = tieredPromptSource([{ prompts: pool, steps: 1 }], 8, new Rng(3, 'grpo'), balance);
    const epoch = Array.from({ length: 125 }, (_, step) => source(step, 0, 8, new Set())).flat();
    expect(new Set(epoch.map((r) => r.id)).size).toBe(1000);
    const used = new Set(source(0, 0, 8, new Set()).map((r) => r.id));
    const refills = Array.from({ length: 20 }, (_, step) => source(step, 1, 8, used)).flat();
    expect(refills.some((r) => used.has(r.id))).toBe(false);
    expect(l1Share(refills)).toBeGreaterThan(1 / 3 - 0.06);
    expect(source(0, 1, 8, used).map((r) => r.id)).toEqual(source(0, 1, 8, used).map((r) => r.id));
  });
});

describe('filter and refill', () => {
  it('passes groups that are neither all right nor all wrong, and with enough distinct reasoning', () => {
    const groups = [group('a', [true, true]), group('b', [true, false]), group('c', [false, true], ['same', 'same']), group('d', [false, false])];
    expect(passingGroups(groups, { dynamic_sampling: true, min_distinct_reasoning: 0 })).toEqual([1, 2]);
    expect(passingGroups(groups, { dynamic_sampling: true, min_distinct_reasoning: 2 })).toEqual([1]);
    expect(passingGroups(groups, { dynamic_sampling: false, min_distinct_reasoning: 0 })).toEqual([0, 1, 2, 3]);
  });

  it('draws more prompts until the batch is full, and stops at max_generation_rounds', async () => {
    // Prompt ids p0, p1, ...: a group passes when its index is odd (one right, one wrong), else all right.
    let next = 0;
    const source = (_step: number, _round: number, count: number) => Array.from({ length: count }, () => record(`p${next++}`));
    const roll: RollRound = async (records) => ({
      groups: records.map((r) => group(r.id, Number(r.id.slice(1)) % 2 === 1 ? [true, false] : [true, true])),
      replayed: 0,
      replayTooLong: 0,
    });
    const p = { prompts_per_step: 3, max_generation_rounds: 4, dynamic_sampling: true, min_distinct_reasoning: 0 };
    // Round 0: p0-p2 -> p1 passes (1). Round 1: p3-p5 -> p3, p5 (3): full after 2 rounds.
    const full = await collectGroups(roll, source, 0, p);
    expect(full.rounds).toBe(2);
    expect(full.kept.map((g) => g.record.id)).toEqual(['p1', 'p3', 'p5']);
    expect(full.generated).toHaveLength(6);
    expect(full.passed).toBe(3);
    // One round only: p6-p8 -> p7 passes; the batch stays short rather than rolling on.
    const short = await collectGroups(roll, source, 0, { ...p, max_generation_rounds: 1 });
    expect(short.rounds).toBe(1);
    expect(short.kept.map((g) => g.record.id)).toEqual(['p7']);
  });
});

describe('guided replay importance weights', () => {
  it('are exp(log p_plain - log p_hinted), truncated at the maximum ratio', () => {
    // Token 0: exp(-2 - (-1)) = e^-1 = 0.3678794; token 1: exp(-1 - (-2)) = e = 2.718 -> 1; token 2: exp(0) = 1.
    const w = truncatedRatios([-2, -1, -0.5], [-1, -2, -0.5], 1);
    expect(w[0]).toBeCloseTo(0.3678794, 6);
    expect(w[1]).toBe(1);
    expect(w[2]).toBe(1);
    expect(truncatedRatios([-1], [-2], 2)[0]).toBe(2);
  });
});

describe('grpo params', () => {
  it('name the keys that disagree: curriculum steps against max_steps, DyKnow against stepwise and replay', () => {
    const issues = (params: unknown) => grpoStage.params.safeParse(params).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];
    expect(issues({ max_steps: 12, curriculum: [{ difficulty: ['easy'], steps: 5 }, { difficulty: ['hard'], steps: 6 }] })).toEqual([
      'curriculum: tiers whose steps sum to max_steps (12); these sum to 11',
    ]);
    expect(issues({ rollout: 'dyknow', advantage: 'stepwise' })).toEqual([
      'advantage: advantage: outcome (rollout: dyknow scales outcome advantages over its two groups)',
      'replay_threshold: replay_threshold: 0 (rollout: dyknow has no guided replay)',
    ]);
    expect(issues({ rollout: 'dyknow', replay_threshold: 0, curriculum: [{ difficulty: ['hard'], steps: 30 }] })).toEqual([]);
    expect(issues({ epochs: 1, max_steps: 30, curriculum: [{ difficulty: ['hard'], steps: 30 }] })).toEqual(['epochs: max_steps instead of epochs (a curriculum states its steps per tier)']);
  });

  it('size the run by epochs over the usable prompts when epochs is set, else take max_steps', () => {
    // A 163-prompt pool at 8 a step: one pass is ceil(163 / 8) = 21 steps, two are ceil(40.75) = 41.
    expect(grpoSteps({ max_steps: 6, epochs: 1, prompts_per_step: 8 }, 163)).toBe(21);
    expect(grpoSteps({ max_steps: 6, epochs: 2, prompts_per_step: 8 }, 163)).toBe(41);
    expect(grpoSteps({ max_steps: 6, epochs: undefined, prompts_per_step: 8 }, 163)).toBe(6);
    // A tenth of an 8-prompt pool still takes one step.
    expect(grpoSteps({ max_steps: 6, epochs: 0.1, prompts_per_step: 8 }, 8)).toBe(1);
  });
});
