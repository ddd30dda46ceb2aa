/**
 * grpo's params (`with:`), apart from the stage so the training modules (train.ts, step.ts,
 * update.ts) can read their type without importing the stage that imports them.
 */
import { z } from 'zod';
import { DEFAULT_REWARD_TIMEOUT_S } from '../lib/rl/reward-files.ts';
import { evalPromptsParam, loraParam, optimizerParams } from '../lib/judge/training-params.ts';

const rewardSpec = z.strictObject({
  use: z.string().min(1).describe('A built-in reward (format, label, label_distance, steps) or a file path starting with ./'),
  weight: z.number().default(1).describe('Multiplies the reward in the total'),
  with: z.record(z.string(), z.unknown()).default({}).describe("The reward's params"),
  // Optional rather than defaulted, so configs that leave it out keep their fingerprints.
  timeout_s: z.number().positive().optional().describe(`A reward file's time limit per call (one batch of completions), in seconds; past it the run fails naming the reward. Absent: ${DEFAULT_REWARD_TIMEOUT_S} (its import gets at least that)`),
});

const curriculumTier = z.strictObject({
  difficulty: z.array(z.enum(['easy', 'medium', 'hard'])).min(1).describe("The examples' difficulties this tier draws prompts from"),
  steps: z.number().int().positive().describe('Optimizer steps spent in this tier'),
});

export const params = z.strictObject({
  rewards: z
    .array(rewardSpec)
    .min(1)
    .default([{ use: 'label', weight: 1, with: {} }, { use: 'format', weight: 0.2, with: {} }, { use: 'steps', weight: 0.5, with: {} }])
    .describe('Reward functions, each logged as reward/<name>; the total is the weighted sum'),
  num_generations: z.number().int().min(2).default(4).describe('Completions per prompt: the group G'),
  prompts_per_step: z.number().int().positive().default(8).describe('Prompts per optimizer step (the batch is prompts_per_step x num_generations completions)'),
  max_steps: z.number().int().positive().default(30).describe('Optimizer steps (epochs, when set, decides instead)'),
  // Optional rather than defaulted, so configs that leave it out keep their fingerprints.
  epochs: z
    .number()
    .positive()
    .optional()
    .describe('Passes over the usable train prompts (the RL pool when the checkpoint holds one out): ceil(epochs x prompts / prompts_per_step) steps, so the RL budget follows the data\'s size; replaces max_steps'),
  num_iterations: z.number().int().positive().default(1).describe('Updates per generated batch (TRL μ); 1 makes the old policy the current one, detached'),
  ...optimizerParams({ learning_rate: 1e-4, warmup_steps: 2, weight_decay: 0, checkpoint_every: 10 }),
  beta: z.number().min(0).default(0).describe('KL coefficient to the reference (k3 estimator); 0 loads no reference model (TRL default)'),
  epsilon: z.number().positive().default(0.2).describe('Lower clip range: the ratio is clipped to [1 - epsilon, 1 + epsilon_high]'),
  epsilon_high: z.number().positive().nullable().default(null).describe('Upper clip range (DAPO clip-higher); null means equal to epsilon, as in TRL'),
  loss_type: z.enum(['grpo', 'bnpo', 'dr_grpo', 'dapo']).default('dapo').describe('Loss aggregation over tokens (TRL names; dapo is TRL\'s default)'),
  scale_rewards: z.enum(['group', 'batch', 'none']).default('group').describe('Divide advantages by the group std, the batch std, or nothing'),
  advantage: z.enum(['outcome', 'stepwise']).default('outcome').describe('outcome: one advantage per completion; stepwise: per reasoning step (rewards that return steps)'),
  dynamic_sampling: z.boolean().default(true).describe('Drop groups whose completions are all right or all wrong (TaoSR1 difficulty sampling)'),
  max_generation_rounds: z.number().int().positive().default(3).describe("Rounds of prompts generated per step to refill groups the filters dropped (verl's max_num_gen_batches); 1 = no refill"),
  min_distinct_reasoning: z.number().int().min(0).default(0).describe("SRPO's diversified filtering: keep a group only when its completions follow at least this many distinct <think> paths (0 or 1 = off)"),
  curriculum: z.array(curriculumTier).default([]).describe('Difficulty tiers trained in order (SRPO multi-stage curriculum); their steps must sum to max_steps; [] = every train prompt throughout'),
  replay_threshold: z.number().min(0).max(1).default(0.25).describe('Groups with accuracy below this are rolled again with a hint (0 = guided replay off)'),
  replay_share: z.number().min(0).max(1).default(0.25).describe('At most this share of a batch\'s groups is replayed'),
  replay_max_ratio: z.number().positive().default(1).describe('Truncation of the importance ratio pi(y|prompt) / pi(y|hinted prompt) that weights hinted completions (V-trace rho-bar)'),
  rollout: z.enum(['plain', 'dyknow']).default('plain').describe('plain: one group per prompt; dyknow: two groups, without and with the knowledge block (DyKnow-RAG)'),
  dyknow: z
    .strictObject({
      alpha: z.number().positive().default(1).describe('Multiplies positive advantages'),
      clamp: z.number().positive().default(2).describe('Advantages are clamped to [-clamp, clamp] after scaling (the paper: 2)'),
    })
    .default({ alpha: 1, clamp: 2 })
    .describe('DyKnow-RAG inter-group advantage scaling (rollout: dyknow); beta comes from each prompt\'s correctness gap'),
  temperature: z.number().positive().default(1).describe('Sampling temperature of the rollouts'),
  top_p: z.number().gt(0).max(1).default(1).describe('Nucleus sampling mass'),
  top_k: z.number().int().min(0).default(0).describe('Keep the k most likely tokens (0 = all)'),
  max_completion_length: z.number().int().positive().default(160).describe('Token budget of a completion'),
  generation_batch_size: z.number().int().positive().default(32).describe('Rows generated together'),
  mini_batch_size: z.number().int().positive().default(16).describe('Completions per forward/backward pass (gradients accumulate over the batch)'),
  eval_prompts: evalPromptsParam(32, 'before and after training'),
  // Optional: absent, the probe decodes with the rollouts' budget, as before the key existed.
  max_new_tokens: z.number().int().positive().optional().describe("Tokens generated per dev prompt when evaluating (absent: max_completion_length, the rollouts' budget)"),
  lora: loraParam,
}).superRefine((p, issue) => {
  const tierSteps = p.curriculum.reduce((n, t) => n + t.steps, 0);
  if (p.curriculum.length > 0 && p.epochs !== undefined) {
    issue.addIssue({ code: 'custom', path: ['epochs'], message: 'max_steps instead of epochs (a curriculum states its steps per tier)' });
  }
  if (p.curriculum.length > 0 && tierSteps !== p.max_steps) {
    issue.addIssue({ code: 'custom', path: ['curriculum'], message: `tiers whose steps sum to max_steps (${p.max_steps}); these sum to ${tierSteps}` });
  }
  if (p.rollout === 'dyknow' && p.advantage === 'stepwise') {
    issue.addIssue({ code: 'custom', path: ['advantage'], message: 'advantage: outcome (rollout: dyknow scales outcome advantages over its two groups)' });
  }
  if (p.rollout === 'dyknow' && p.replay_threshold > 0) {
    issue.addIssue({ code: 'custom', path: ['replay_threshold'], message: 'replay_threshold: 0 (rollout: dyknow has no guided replay)' });
  }
});

export type GrpoParams = z.output<typeof params>;
