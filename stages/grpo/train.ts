/**
 * The grpo stage's run (the recipe is described in index.ts). Loaded lazily: it imports tfjs.
 */
import * as tf from '@tensorflow/tfjs-core';
import { yieldToEventLoop, type StageContext, type StageOutcome } from '../../pipeline/stage-api.ts';
import type { ReasoningSteps } from '../lib/completion.ts';
import * as engineLib from '../lib/engine/index.ts';
import { generateCompletions, loadPolicy, promptIds, fitsContext, type Completion, type Policy } from '../lib/policy.ts';
import type { ChatMessage, PromptRecord } from '../lib/relevance/prompts.ts';
import { loadKnowledgeGraph } from '../lib/relevance/kg.ts';
import { groupAdvantages, informativeGroups, mean, std, stepwiseAdvantages } from '../lib/rl/advantages.ts';
import { grpoLoss } from '../lib/rl/losses.ts';
import { loadRewards, rewardMean, scoreBatch, type RewardInput, type ScoredBatch } from '../lib/rewards.ts';
import { greedyAccuracy, judgeCompletion, probeSample, readPromptRecords, referenceSteps } from '../lib/scoring.ts';
import { finishTraining, resumeTraining, saveStepCheckpoint, trainableModel } from '../lib/training.ts';
import type { GrpoParams } from './index.ts';
import { tokenStepIndices } from './token-steps.ts';

/** One completion of a group, ready for the loss. */
interface Rollout {
  record: PromptRecord;
  completion: Completion;
  /** The plain prompt's ids: replayed completions are trained as answers to it, not to the hinted one. */
  prompt: number[];
  /**
   * The answer is the gold grade (format aside): what "right" means for dynamic sampling and the
   * replay threshold, which are about how hard the prompt is, not about the format.
   */
  correct: boolean;
  hinted: boolean;
}

/** TaoSR-AGRL's hint: the gold grade and the rules that decide it, appended to the user turn. */
export function hintedMessages(record: PromptRecord): ChatMessage[] {
  const rules = record.example.meta.rules;
  const hint = `Hint: the correct grade is ${record.example.label}; ${rules.length > 0 ? `the deciding rules are ${rules.join(', ')}` : 'no business rule fires'}.`;
  return record.messages.map((m) => (m.role === 'user' ? { ...m, content: `${m.content}\n${hint}` } : m));
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

export async function trainGrpo(ctx: StageContext<GrpoParams>): Promise<StageOutcome> {
  const p = ctx.params;
  const G = p.num_generations;
  const { policy, engine } = await loadPolicy(ctx.inputs.one('checkpoint').dir, ctx.engine, ctx.log);
  const { model, tokenizer } = policy;
  const kg = await loadKnowledgeGraph(ctx.inputs.one('kg').dir);
  const promptsDir = ctx.inputs.one('prompts').dir;
  const rewards = await loadRewards(p.rewards, ctx.configDir);
  const decode = (ids: number[]) => tokenizer.decode(ids, { skipSpecialTokens: true });

  const { restrictToRlPool } = await import('../lib/rl-pool.ts');
  // The RL pool the SFT checkpoint held out, when it has one; else every train prompt.
  const all = await restrictToRlPool(ctx.inputs.one('checkpoint').dir, await readPromptRecords(promptsDir, 'train'));
  const train = all.filter((r) => fitsContext(policy, promptIds(tokenizer, policy.format, r.messages).length, p.max_completion_length));
  const skippedTooLong = all.length - train.length;
  if (skippedTooLong > 0) ctx.log.warn(`skipped ${skippedTooLong} of ${all.length} train prompts too long for the context with ${p.max_completion_length} new tokens`);
  if (train.length < p.prompts_per_step) throw new Error(`prompts_per_step ${p.prompts_per_step} exceeds the ${train.length} usable train prompts`);
  const references = referenceSteps(train, kg);
  const probeRecords = p.eval_prompts > 0 ? probeSample(await readPromptRecords(promptsDir, 'dev'), p.eval_prompts, ctx.seed) : [];
  const probe = () => greedyAccuracy(policy, probeRecords, { maxNewTokens: p.max_completion_length, batchSize: p.generation_batch_size, rng: ctx.rng.fork('probe'), signal: ctx.signal });
  const before = await probe();
  ctx.log.info(`dev probe before: ${JSON.stringify(before)}`);

  const trainable = await trainableModel(ctx, model, p.lora);
  // The reference is the input checkpoint, needed only when the KL term is on: with LoRA the frozen
  // base under the adapters, else the checkpoint loaded a second time.
  const reference = p.beta > 0 ? (p.lora ? engineLib.withoutAdapters(model) : engineLib.loadModel(ctx.inputs.one('checkpoint').dir)) : undefined;
  const optimizer = new engineLib.AdamW(trainable, engineLib.adamWOptionsSchema.parse({ weight_decay: p.weight_decay }));
  let step = await resumeTraining(ctx, model, optimizer);
  if (step > 0) await policy.inference.refresh(); // rollouts must see the resumed weights

  const stepsPerEpoch = Math.floor(train.length / p.prompts_per_step);
  const totals = { kept_groups: 0, dropped_groups: 0, replayed_groups: 0, skipped_updates: 0 };
  const rewardCurve: number[] = [];
  while (step < p.max_steps) {
    ctx.signal.throwIfAborted();
    // Prompts and rollouts are pure functions of (seed, step): a resumed run redoes the same ones.
    const epoch = Math.floor(step / stepsPerEpoch);
    const order = ctx.rng.fork(`epoch-${epoch}`).shuffle(train.map((_, i) => i));
    const start = (step % stepsPerEpoch) * p.prompts_per_step;
    const batch = order.slice(start, start + p.prompts_per_step).map((i) => train[i] as PromptRecord);
    const rng = ctx.rng.fork(`step-${step}`);
    const rollouts = await rollOut(policy, batch, batch.map((r) => r.messages), G, rng, false);

    // Guided replay: the second half of a weak group is rolled again with the hint.
    const accuracy = batch.map((_, g) => mean(rollouts.slice(g * G, (g + 1) * G).map((r) => (r.correct ? 1 : 0))));
    const replay = groupsToReplay(accuracy, p.replay_threshold, p.replay_share);
    if (replay.length > 0) {
      const half = Math.ceil(G / 2);
      const hinted = await rollOut(policy, replay.map((g) => batch[g] as PromptRecord), replay.map((g) => hintedMessages(batch[g] as PromptRecord)), half, rng, true);
      replay.forEach((g, j) => {
        for (let k = 0; k < half; k++) rollouts[g * G + (G - half) + k] = hinted[j * half + k] as Rollout;
      });
    }

    const scored = await scoreBatch(rewards, rollouts.map(rewardInput));
    const keep = p.dynamic_sampling ? informativeGroups(rollouts.map((r) => r.correct), G) : batch.map((_, g) => g);
    totals.kept_groups += keep.length;
    totals.dropped_groups += batch.length - keep.length;
    totals.replayed_groups += replay.length;
    const rows = keep.flatMap((g) => Array.from({ length: G }, (_, k) => g * G + k));
    const values: Record<string, number | null> = {
      reward: mean(scored.total),
      reward_std: std(scored.total),
      accuracy: mean(rollouts.map((r) => (r.correct ? 1 : 0))),
      hinted_accuracy: replay.length === 0 ? null : mean(rollouts.filter((r) => r.hinted).map((r) => (r.correct ? 1 : 0))),
      completion_length: mean(rollouts.map((r) => r.completion.tokens.length)),
      // Mean -log p of the sampled tokens: an unbiased estimate of the policy's entropy when sampling
      // at temperature 1 without top-k/top-p (the engine returns no full distributions).
      entropy: -mean(rollouts.flatMap((r) => r.completion.logprobs)),
      kept_groups: keep.length,
      replayed_groups: replay.length,
    };
    for (const reward of rewards) values[`reward/${reward.name}`] = rewardMean(scored.byReward[reward.name] ?? []);
    rewardCurve.push(values.reward as number);

    const lr = engineLib.warmupCosineLr(step, { peak: p.learning_rate, warmup: p.warmup_steps, total: p.max_steps, min: p.learning_rate * p.min_lr_ratio });
    if (rows.length === 0) {
      totals.skipped_updates++;
      ctx.log.info(`step ${step + 1}: every group all right or all wrong; no update`);
    } else {
      Object.assign(values, await update(rows, rollouts, scored, lr));
      // The next rollouts sample the updated policy: re-export it to the inference session (onnxruntime).
      values.inference_refresh_s = await policy.inference.refresh();
    }
    step++;
    ctx.metrics.log(step, { ...values, lr });
    ctx.progress.update(step, p.max_steps, 'steps');
    await yieldToEventLoop();
    await saveStepCheckpoint(ctx, step, p.max_steps, p.checkpoint_every, model, optimizer);
  }

  const probed = await finishTraining(ctx, policy, optimizer, step, before, probe);
  if (reference) (p.lora ? engineLib.releaseFrozenWeights(reference) : engineLib.disposeModel(reference));
  const third = Math.max(1, Math.floor(rewardCurve.length / 3));
  return {
    engine,
    metrics: {
      steps: step,
      ...totals,
      skipped_too_long: skippedTooLong,
      reward_first_third: mean(rewardCurve.slice(0, third)),
      reward_last_third: mean(rewardCurve.slice(-third)),
      ...probed,
    },
  };

  async function rollOut(policy: Policy, records: PromptRecord[], messages: ChatMessage[][], n: number, rng: typeof ctx.rng, hinted: boolean): Promise<Rollout[]> {
    const completions = await generateCompletions(
      policy,
      records.map((r, i) => ({ id: r.id, messages: messages[i] as ChatMessage[] })),
      { n, batchSize: p.generation_batch_size, maxNewTokens: p.max_completion_length, temperature: p.temperature, topK: p.top_k, topP: p.top_p, rng, signal: ctx.signal },
    );
    // generateCompletions keeps request order and each request's samples together.
    return completions.map((completion, i) => {
      const record = records[Math.floor(i / n)] as PromptRecord;
      const judged = judgeCompletion(completion.text, references.get(record.id) as ReasoningSteps, record.example.label);
      return { record, completion, prompt: promptIds(tokenizer, policy.format, record.messages), correct: judged.verification.labelCorrect, hinted };
    });
  }

  function rewardInput(r: Rollout): RewardInput {
    const judged = judgeCompletion(r.completion.text, references.get(r.record.id) as ReasoningSteps, r.record.example.label);
    return {
      id: r.record.id,
      prompt: decode(r.prompt),
      completion: r.completion.text,
      parsed: judged.parsed,
      gold: r.record.example.label,
      meta: r.record.example.meta,
      reference: references.get(r.record.id) as ReasoningSteps,
    };
  }

  /** Per-token advantages of the kept rows, (rows, longest completion) as nested arrays. */
  function tokenAdvantages(rows: number[], rollouts: Rollout[], scored: ScoredBatch): number[][] {
    const total = rows.map((i) => scored.total[i] as number);
    if (p.advantage === 'stepwise') {
      if (!scored.steps) throw new Error('advantage: stepwise needs a reward that returns per-step values (e.g. steps)');
      const steps = rows.map((i) => (scored.steps as number[][])[i] as number[]);
      const perStep = stepwiseAdvantages(total, steps, G, p.scale_rewards);
      return rows.map((i, j) => tokenStepIndices((rollouts[i] as Rollout).completion.tokens, decode).map((k) => (perStep[j] as number[])[k] as number));
    }
    // Groups were kept whole, so rows are still laid out group after group.
    const outcome = groupAdvantages(total, G, p.scale_rewards);
    return rows.map((i, j) => (rollouts[i] as Rollout).completion.tokens.map(() => outcome[j] as number));
  }

  /** num_iterations clipped-objective updates on the kept rows; returns the step's loss metrics. */
  async function update(rows: number[], rollouts: Rollout[], scored: ScoredBatch, lr: number): Promise<Record<string, number>> {
    const advantages = tokenAdvantages(rows, rollouts, scored);
    const items = rows.map((i, j) => ({
      row: { prompt: (rollouts[i] as Rollout).prompt, completion: (rollouts[i] as Rollout).completion.tokens },
      advantage: advantages[j] as number[],
    }));
    const micro: (typeof items)[] = [];
    for (let i = 0; i < items.length; i += p.mini_batch_size) micro.push(items.slice(i, i + p.mini_batch_size));
    // Frozen log-probs per micro-batch, computed before any update of this step.
    const frozenLogprobs = async (m: Parameters<typeof engineLib.sequenceLogprobs>[0], batch: typeof items) => {
      const logprobs = tf.tidy(() => engineLib.sequenceLogprobs(m, batch.map((b) => b.row), { frozen: true }).logprobs);
      const values = (await logprobs.array()) as number[][];
      logprobs.dispose();
      return values;
    };
    const referenceLogprobs = reference ? await Promise.all(micro.map((b) => frozenLogprobs(reference, b))) : undefined;
    // Kept, the base's derived (transposed) weights would be the second copy LoRA avoids.
    if (reference && p.lora) engineLib.releaseFrozenWeights(reference);
    // TRL: with num_iterations 1 the old policy is the current one, detached; else one pass before the updates.
    const oldLogprobs = p.num_iterations > 1 ? await Promise.all(micro.map((b) => frozenLogprobs(model, b))) : undefined;
    const pad = (values: number[], width: number) => [...values, ...new Array<number>(width - values.length).fill(0)];
    let kl: tf.Tensor[] = [];
    let clip: tf.Tensor[] = [];
    let result: engineLib.StepResult | undefined;
    for (let iteration = 0; iteration < p.num_iterations; iteration++) {
      tf.dispose([...kl, ...clip]);
      kl = [];
      clip = [];
      result = await engineLib.trainStep(
        model,
        optimizer,
        micro.map((batch, index) => ({ batch, index })),
        ({ batch, index }) => {
          const { logprobs, mask } = engineLib.sequenceLogprobs(model, batch.map((b) => b.row));
          const width = logprobs.shape[1];
          const old = oldLogprobs ? tf.tensor2d(oldLogprobs[index] as number[][]) : engineLib.stopGradient(logprobs);
          const ref = referenceLogprobs ? tf.tensor2d(referenceLogprobs[index] as number[][]) : undefined;
          const adv = tf.tensor2d(batch.map((b) => pad(b.advantage, width)));
          const out = grpoLoss(logprobs, old, ref, adv, mask, {
            type: p.loss_type,
            epsilon: p.epsilon,
            epsilonHigh: p.epsilon_high ?? p.epsilon,
            beta: p.beta,
            maxCompletionLength: p.max_completion_length,
          });
          kl.push(tf.keep(out.meanKl)); // read after the step: webgpu reads are async
          clip.push(tf.keep(out.clipFraction));
          // trainStep divides the summed loss by the summed weight. dapo normalises by the tokens of
          // the whole batch; grpo and dr_grpo average over sequences; bnpo averages the micro-batch
          // token means (TRL's per-process normalisation).
          const tokens = batch.reduce((n, b) => n + b.row.completion.length, 0);
          const weight = p.loss_type === 'dapo' ? tokens : p.loss_type === 'bnpo' ? 1 : batch.length;
          return { loss: tf.mul(out.loss, weight) as tf.Scalar, weight };
        },
        { lr, maxGradNorm: p.max_grad_norm },
      );
    }
    const read = async (ts: tf.Tensor[]) => Promise.all(ts.map(async (t) => (await t.data())[0] as number));
    const means = { kl: mean(await read(kl)), clip_ratio: mean(await read(clip)) };
    tf.dispose([...kl, ...clip]);
    return { loss: result?.loss ?? 0, grad_norm: result?.gradNorm ?? 0, ...means };
  }
}
