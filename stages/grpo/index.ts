/**
 * grpo: Group Relative Policy Optimization with rule-shaped rewards (DeepSeekMath §4; TaoSR1's RL
 * stage), following Hugging Face TRL's GRPOTrainer (trl/trainer/grpo_trainer.py,
 * `_generate_and_score_completions` and `_compute_loss`; docs: https://huggingface.co/docs/trl/grpo_trainer).
 *
 * Each step is a pipeline of named functions (step.ts, update.ts):
 * 1. rollout: `prompts_per_step` prompts from the prompt source (a seeded shuffle per epoch of each
 *    curriculum tier, declared under `curriculum:`), `num_generations` completions each, sampled
 *    with a generator seeded by the step, so a resumed run redoes the same rollouts. With
 *    `rollout: dyknow` (DyKnow-RAG) each prompt gets two groups: without its knowledge block and
 *    with it. Adaptive guided replay (TaoSR-AGRL): groups whose accuracy is below
 *    `replay_threshold` get half their completions rolled again with a hint (gold grade and
 *    deciding rules), for at most `replay_share` of the groups, where the hinted prompt fits;
 * 2. judge once: each completion is parsed and verified once, and scored once by the reward
 *    registry (`rewards:`), each reward weighted and logged under its own name;
 * 3. filter and refill: dynamic sampling (TaoSR1, DAPO) drops groups whose completions are all
 *    right or all wrong, SRPO's diversity filter (`min_distinct_reasoning`) groups that reason one
 *    way only; new prompts are drawn until the batch is full or `max_generation_rounds` is reached
 *    (verl's `max_num_gen_batches`), and the kept fraction is logged;
 * 4. advantages: (r - group mean) / (std + eps) by `scale_rewards`; with `advantage: stepwise` the
 *    outcome rewards and each step's reward are normalised apart and each token adds its own and
 *    the later steps' (advantages.ts); DyKnow scales advantages over the union of its two groups;
 * 5. update: hinted completions are weighted by the truncated ratio of the plain-prompt to the
 *    hinted-prompt probability (off-policy correction, update.ts); `num_iterations` updates on the
 *    clipped ratio objective (epsilon, epsilon_high) with k3 KL to the reference when beta > 0, all
 *    log-probs at the sampling temperature, aggregated by `loss_type`.
 * On-policy and hinted rollouts are logged apart (reward, accuracy, entropy); a resumed run restores
 * its running totals and reward curve from the step checkpoint.
 *
 *   grpo:
 *     uses: grpo
 *     needs: [dpo, icl, kg]
 *     with:
 *       rewards: [{ use: label }, { use: format, weight: 0.2 }, { use: ./my-reward.ts, weight: 0.5 }]
 */
import { defineStage } from '../../pipeline/api.ts';
import { checkRewardSpec, isRewardFile, RewardSpecError } from '../lib/rl/rewards.ts';
import { params, type GrpoParams } from './params.ts';

export default defineStage({
  name: 'grpo',
  // 4: prompts drawn grade-balanced when the RL pool carries SFT's balance.
  // 5: one training loop and the trainers' shared key names (stages/lib/judge/training.ts); max_new_tokens for the probe.
  version: '5',
  description: 'GRPO with weighted reward functions, stepwise advantages, dynamic sampling with refill, guided replay, DyKnow-RAG groups and an SRPO curriculum (TRL semantics)',
  params,
  produces: 'checkpoint',
  resources: 'train',
  requires: () => ['checkpoint', 'kg', 'prompts'],
  userFiles: (p: GrpoParams) => p.rewards.filter((r) => isRewardFile(r.use)).map((r) => r.use),
  // Each reward is checked at validate/plan time (unknown built-in, bad params, missing file, a
  // file that does not compile or has no default export) without running any reward file.
  async check(p: GrpoParams, { configDir }) {
    const problems = [];
    for (const [index, spec] of p.rewards.entries()) {
      try {
        await checkRewardSpec(spec, configDir);
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
