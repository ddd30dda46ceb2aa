/**
 * The first half of a GRPO step: which prompts (the prompt source), their rollouts (plain, hinted
 * for guided replay, or DyKnow's two groups), each judged once, and each scored once by the reward
 * registry. Everything a group needs later (correctness, rewards, reasoning text) is computed here.
 */
import type { Rng } from '../../pipeline/api.ts';
import type { ReasoningSteps } from '../lib/relevance/completion.ts';
import { generateCompletions, promptIds, type Completion, type Policy } from '../lib/judge/model.ts';
import type { ChatMessage, PromptRecord } from '../lib/relevance/prompts.ts';
import { scoreBatch, type LoadedReward, type RewardInput } from '../lib/rl/rewards.ts';
import { judgeCompletion, type Judgement } from '../lib/relevance/completion.ts';
import { seededSample } from '../lib/relevance/subsample.ts';
import { balancedOrder, type GradeBalance } from '../lib/relevance/grade-balance.ts';

/**
 * How a rollout was sampled. `policy`: the prompt as given (with its knowledge block, if any);
 * `hinted`: guided replay, sampled from the prompt plus a hint but trained as an answer to the plain
 * prompt (off-policy, importance-weighted in the update); `no-context`: DyKnow's group without the
 * retrieved context chunk (on-policy for its own prompt).
 */
export type RolloutKind = 'policy' | 'hinted' | 'no-context';

/** A rollout's rewards, from one `scoreBatch` call. */
export interface RolloutReward {
  /** Σ weight × value over every reward. */
  total: number;
  /** Σ weight × value over the rewards that return no steps. */
  outcome: number;
  /** Per stepped reward (config order): its weight and its unweighted per-step values. */
  stepped: { weight: number; steps: number[] }[];
  /** Per reward name (null = not applicable). */
  byReward: Record<string, number | null>;
}

export interface Rollout {
  record: PromptRecord;
  completion: Completion;
  kind: RolloutKind;
  /** The ids the policy is trained to answer: the plain prompt for a hinted rollout. */
  prompt: number[];
  /** The ids the completion was sampled from (differs from `prompt` only when hinted). */
  sampledFrom: number[];
  judgement: Judgement;
  /**
   * The answer is the gold grade (format aside): what "right" means for dynamic sampling, the replay
   * threshold and DyKnow's accuracies, which are about how hard the prompt is, not about the format.
   */
  correct: boolean;
  reward: RolloutReward;
}

/** One prompt's rollouts: G of them, or 2G for DyKnow (G without the context chunk, then G with it). */
export interface Group {
  record: PromptRecord;
  rollouts: Rollout[];
}

/**
 * Where a step's prompts come from: `count` prompts for generation round `round` of step `step`,
 * none of `exclude` (ids already drawn this step). A pure function of its arguments and the seed, so
 * a resumed run redoes the same rollouts. One function, so another pool (a held-out RL pool ranked
 * by SFT uncertainty) or a curriculum plugs in without touching the step.
 */
export type PromptSource = (step: number, round: number, count: number, exclude: ReadonlySet<string>) => PromptRecord[];

/** A difficulty tier of the curriculum: its prompts and how many steps it lasts. */
export interface CurriculumTier {
  prompts: readonly PromptRecord[];
  steps: number;
}

/**
 * The default prompt source over curriculum tiers in order (one tier = no curriculum). Round 0 walks
 * a seeded shuffle of the current tier, epoch after epoch; refill rounds (dynamic sampling) draw a
 * seeded random sample of the tier's prompts not yet used this step.
 *
 * With `balance` (the RL pool's, set when SFT balanced grades) both are drawn the way `sample` draws
 * the pool and `dpo` its pairs: an epoch's order and each refill are grade-weighted orders without
 * repeats (grade-balance.ts `balancedOrder`), so the steps of a fraction of an epoch (chorus.yaml's
 * 0.1) favour the rare grades as SFT's epochs did, and a whole epoch still visits every prompt once.
 */
export function tieredPromptSource(tiers: readonly CurriculumTier[], perStep: number, rng: Rng, balance?: GradeBalance): PromptSource {
  if (tiers.length === 0) throw new Error('tieredPromptSource: no tier');
  const gradeOf = (r: PromptRecord) => r.example.label;
  const ordered = (pool: readonly PromptRecord[], stream: Rng): PromptRecord[] => (balance ? balancedOrder(pool, gradeOf, balance, stream) : stream.shuffle([...pool]));
  return (step, round, count, exclude) => {
    let start = 0;
    let tier = tiers.length - 1;
    for (let t = 0; t < tiers.length - 1; t++) {
      if (step < start + (tiers[t] as CurriculumTier).steps) {
        tier = t;
        break;
      }
      start += (tiers[t] as CurriculumTier).steps;
    }
    const pool = (tiers[tier] as CurriculumTier).prompts;
    const local = step - start;
    if (round === 0) {
      const stepsPerEpoch = Math.max(1, Math.floor(pool.length / perStep));
      const epochRng = rng.fork(`tier-${tier}/epoch-${Math.floor(local / stepsPerEpoch)}`);
      // Unbalanced, the shuffle of indices it always was, so unbalanced runs draw what they drew.
      const order = balance ? ordered(pool, epochRng) : epochRng.shuffle(pool.map((_, i) => i)).map((i) => pool[i] as PromptRecord);
      const from = (local % stepsPerEpoch) * perStep;
      return order.slice(from, from + count).filter((r) => !exclude.has(r.id));
    }
    const unused = pool.filter((r) => !exclude.has(r.id));
    const refillRng = rng.fork(`tier-${tier}/step-${step}/round-${round}`);
    return balance ? ordered(unused, refillRng).slice(0, count) : seededSample(unused, count, refillRng);
  };
}

/** TaoSR-AGRL's hint: the gold grade and the rules that decide it, appended to the user turn. */
export function hintedMessages(record: PromptRecord): ChatMessage[] {
  const rules = record.example.meta.rules;
  const hint = `Hint: the correct grade is ${record.example.label}; ${rules.length > 0 ? `the deciding rules are ${rules.join(', ')}` : 'no business rule fires'}.`;
  return record.messages.map((m) => (m.role === 'user' ? { ...m, content: `${m.content}\n${hint}` } : m));
}

/**
 * The prompt without its retrieved context chunk, DyKnow's no-context group: the user turn's
 * leading "Knowledge:" block of knowledge-graph facts (the icl stage's rendering) is removed. A
 * prompt without such a block is returned as it is.
 */
export function withoutContext(record: PromptRecord): ChatMessage[] {
  return record.messages.map((m) => (m.role === 'user' ? { ...m, content: m.content.replace(/^Knowledge:\n(?:- [^\n]*\n)*\n/, '') } : m));
}

/**
 * Which groups to replay: those below the accuracy threshold, least accurate first, at most
 * `share` of the groups (at least one when any qualifies and share > 0).
 */
export function groupsToReplay(accuracy: readonly number[], threshold: number, share: number): number[] {
  if (threshold <= 0 || share <= 0) return [];
  const limit = Math.max(1, Math.floor(share * accuracy.length));
  return accuracy
    .map((a, index) => ({ a, index }))
    .filter(({ a }) => a < threshold)
    .sort((x, y) => x.a - y.a || x.index - y.index)
    .slice(0, limit)
    .map(({ index }) => index);
}

/** The reasoning a completion followed: its `<think>` block (what SRPO's diversity filter compares). */
export function reasoningText(rollout: Rollout): string {
  const text = rollout.completion.text;
  const start = text.indexOf('<think>');
  const end = text.indexOf('</think>', start);
  return start < 0 ? '' : text.slice(start, end < 0 ? text.length : end);
}

export interface Sampler {
  policy: Policy;
  references: ReadonlyMap<string, ReasoningSteps>;
  rewards: readonly LoadedReward[];
  sampling: { n: number; batchSize: number; maxNewTokens: number; temperature: number; topK: number; topP: number; signal: AbortSignal };
}

/**
 * Samples `n` completions for each (record, messages) request, judges each once and returns them
 * unscored (reward filled by `scoreRollouts`). Generation goes through `generateCompletions` only.
 */
export async function rollOut(sampler: Sampler, requests: { record: PromptRecord; messages: ChatMessage[]; kind: RolloutKind }[], rng: Rng): Promise<Rollout[]> {
  const { policy, references, sampling } = sampler;
  const completions = await generateCompletions(
    policy,
    requests.map((r) => ({ id: r.record.id, messages: r.messages })),
    // No repetition penalty whatever the model's generation_config says (TRL's GRPOConfig default,
    // repetition_penalty 1): the policy-gradient loss scores these samples under the model's own
    // distribution, so they must be drawn from it.
    { ...sampling, rng, repetitionPenalty: 1 },
  );
  const plainIds = new Map<string, number[]>();
  // generateCompletions keeps request order and each request's samples together.
  return completions.map((completion, i) => {
    const { record, kind } = requests[Math.floor(i / sampling.n)] as (typeof requests)[number];
    const judgement = judgeCompletion(completion.text, references.get(record.id) as ReasoningSteps, record.example.label);
    const plain = plainIds.get(record.id) ?? promptIds(policy.tokenizer, policy.format, record.messages);
    plainIds.set(record.id, plain);
    return {
      record,
      completion,
      kind,
      prompt: kind === 'hinted' ? plain : completion.promptTokens,
      sampledFrom: completion.promptTokens,
      judgement,
      correct: judgement.verification.labelCorrect,
      reward: { total: 0, outcome: 0, stepped: [], byReward: {} },
    };
  });
}

/** Scores every rollout with the reward registry, in one batch; fills `reward` in place. */
export async function scoreRollouts(sampler: Sampler, rollouts: Rollout[]): Promise<void> {
  const decode = (ids: number[]) => sampler.policy.tokenizer.decode(ids, { skipSpecialTokens: true });
  const inputs = rollouts.map(
    (r): RewardInput => ({
      id: r.record.id,
      prompt: decode(r.prompt),
      completion: r.completion.text,
      parsed: r.judgement.parsed,
      gold: r.record.example.label,
      meta: r.record.example.meta,
      reference: sampler.references.get(r.record.id) as ReasoningSteps,
    }),
  );
  const scored = await scoreBatch(sampler.rewards, inputs);
  rollouts.forEach((r, i) => {
    r.reward = {
      total: scored.total[i] as number,
      outcome: scored.outcome[i] as number,
      stepped: scored.stepped.map((s) => ({ weight: s.weight, steps: s.steps[i] as number[] })),
      byReward: Object.fromEntries(Object.entries(scored.byReward).map(([name, values]) => [name, values[i] ?? null])),
    };
  });
}
