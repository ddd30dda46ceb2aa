/**
 * grpo: Group Relative Policy Optimization with rule-shaped rewards (DeepSeekMath §4; TaoSR1's RL
 * stage), following Hugging Face TRL's GRPOTrainer (trl/trainer/grpo_trainer.py,
 * `_generate_and_score_completions` and `_compute_loss`; docs: https://huggingface.co/docs/trl/grpo_trainer).
 *
 * Each step:
 * 1. `prompts_per_step` train prompts (a seeded shuffle per epoch), `num_generations` completions
 *    each (the group), sampled with a generator seeded by the step, so a resumed run redoes the
 *    same rollouts;
 * 2. adaptive guided replay (TaoSR-AGRL): groups whose accuracy is below `replay_threshold` get
 *    half their completions rolled again with a hint (gold grade and deciding rules) in the prompt,
 *    for at most `replay_share` of the groups; they are trained as answers to the plain prompt;
 * 3. rewards from the registry (`rewards:`), each weighted and logged under its own name;
 * 4. dynamic sampling (TaoSR1, DAPO): groups whose completions are all right or all wrong go;
 * 5. advantages (r - group mean) / (std + eps) by `scale_rewards`; with `advantage: stepwise` each
 *    token adds the normalised rewards of its own reasoning step and the later ones (token-steps.ts);
 * 6. `num_iterations` updates on the clipped ratio objective (epsilon, epsilon_high) with k3 KL to
 *    the reference when beta > 0 (no reference model is loaded at beta 0), aggregated by `loss_type`.
 *
 *   grpo:
 *     uses: grpo
 *     needs: [dpo, icl, kg]
 *     with:
 *       rewards: [{ use: label }, { use: format, weight: 0.2 }, { use: ./my-reward.ts, weight: 0.5 }]
 */
import { z } from 'zod';
import { loraOptionsSchema } from '../lib/engine/lora-options.ts';
import { defineStage } from '../../pipeline/stage-api.ts';
import { isRewardFile, loadRewards, RewardSpecError } from '../lib/rewards.ts';

const rewardSpec = z.strictObject({
  use: z.string().min(1).describe('A built-in reward (format, label, label_distance, steps) or a file path starting with ./'),
  weight: z.number().default(1).describe('Multiplies the reward in the total'),
  with: z.record(z.string(), z.unknown()).default({}).describe("The reward's params"),
});

const params = z.strictObject({
  rewards: z
    .array(rewardSpec)
    .min(1)
    .default([{ use: 'label', weight: 1, with: {} }, { use: 'format', weight: 0.2, with: {} }, { use: 'steps', weight: 0.5, with: {} }])
    .describe('Reward functions, each logged as reward/<name>; the total is the weighted sum'),
  num_generations: z.number().int().min(2).default(4).describe('Completions per prompt: the group G'),
  prompts_per_step: z.number().int().positive().default(8).describe('Prompts per optimizer step (the batch is prompts_per_step x num_generations completions)'),
  max_steps: z.number().int().positive().default(30).describe('Optimizer steps'),
  num_iterations: z.number().int().positive().default(1).describe('Updates per generated batch (TRL μ); 1 makes the old policy the current one, detached'),
  learning_rate: z.number().positive().default(1e-4).describe('Peak learning rate (warmup then cosine decay)'),
  min_lr_ratio: z.number().min(0).max(1).default(0.1).describe('Final learning rate as a fraction of learning_rate'),
  warmup_steps: z.number().int().min(0).default(2).describe('Linear warmup steps'),
  weight_decay: z.number().min(0).default(0).describe('AdamW decoupled weight decay'),
  max_grad_norm: z.number().min(0).default(1).describe('Clip the global gradient norm (0 = off)'),
  beta: z.number().min(0).default(0).describe('KL coefficient to the reference (k3 estimator); 0 loads no reference model (TRL default)'),
  epsilon: z.number().positive().default(0.2).describe('Lower clip range: the ratio is clipped to [1 - epsilon, 1 + epsilon_high]'),
  epsilon_high: z.number().positive().nullable().default(null).describe('Upper clip range (DAPO clip-higher); null means equal to epsilon, as in TRL'),
  loss_type: z.enum(['grpo', 'bnpo', 'dr_grpo', 'dapo']).default('dapo').describe('Loss aggregation over tokens (TRL names; dapo is TRL\'s default)'),
  scale_rewards: z.enum(['group', 'batch', 'none']).default('group').describe('Divide advantages by the group std, the batch std, or nothing'),
  advantage: z.enum(['outcome', 'stepwise']).default('outcome').describe('outcome: one advantage per completion; stepwise: per reasoning step (rewards that return steps)'),
  dynamic_sampling: z.boolean().default(true).describe('Drop groups whose completions are all right or all wrong (TaoSR1 difficulty sampling)'),
  replay_threshold: z.number().min(0).max(1).default(0.25).describe('Groups with accuracy below this are rolled again with a hint (0 = guided replay off)'),
  replay_share: z.number().min(0).max(1).default(0.25).describe('At most this share of a batch\'s groups is replayed'),
  temperature: z.number().positive().default(1).describe('Sampling temperature of the rollouts'),
  top_p: z.number().gt(0).max(1).default(1).describe('Nucleus sampling mass'),
  top_k: z.number().int().min(0).default(0).describe('Keep the k most likely tokens (0 = all)'),
  max_completion_length: z.number().int().positive().default(160).describe('Token budget of a completion'),
  generation_batch_size: z.number().int().positive().default(32).describe('Rows generated together'),
  mini_batch_size: z.number().int().positive().default(16).describe('Completions per forward/backward pass (gradients accumulate over the batch)'),
  eval_prompts: z.number().int().min(0).default(32).describe('Dev prompts decoded greedily before and after training, for accuracy (0 = none)'),
  checkpoint_every: z.number().int().positive().default(10).describe('Save a step checkpoint every N steps'),
  lora: loraOptionsSchema
    .nullable()
    .default(null)
    .describe('Train LoRA adapters on the input checkpoint instead of every weight (PEFT names: r, lora_alpha, lora_dropout, target_modules); the checkpoint holds the merged weights and adapter/ in PEFT format'),
});

export type GrpoParams = z.output<typeof params>;

export default defineStage({
  name: 'grpo',
  version: '2',
  description: 'GRPO with weighted reward functions, stepwise advantages, dynamic sampling and guided replay (TRL semantics)',
  params,
  produces: 'checkpoint',
  resources: 'train',
  requires: () => ['checkpoint', 'kg', 'prompts'],
  userFiles: (p: GrpoParams) => p.rewards.filter((r) => isRewardFile(r.use)).map((r) => r.use),
  // Each reward is loaded once at validate/plan time (unknown built-in, missing or broken file).
  async check(p: GrpoParams, { configDir }) {
    const problems = [];
    for (const [index, spec] of p.rewards.entries()) {
      try {
        await loadRewards([spec], configDir);
      } catch (error) {
        if (!(error instanceof RewardSpecError)) throw error;
        problems.push({ path: ['rewards', index, error.key], message: error.message });
      }
    }
    return problems;
  },
  async run(ctx) {
    const { trainGrpo } = await import('./train.ts');
    return trainGrpo(ctx);
  },
});
