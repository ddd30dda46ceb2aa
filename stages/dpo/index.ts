/**
 * dpo: Direct Preference Optimization on pairs from pass@N samples (TaoSR1's DPO stage).
 *
 * Recipe, as Hugging Face TRL's DPOTrainer runs it (trl/trainer/dpo_trainer.py; docs:
 * https://huggingface.co/docs/trl/dpo_trainer):
 * 1. pairs: chosen = a correct sample, rejected = an incorrect one; the teacher's CoT (the sft-set,
 *    when it is in `needs`) is chosen where no sample is correct (pairs.ts);
 * 2. reference log-probs computed once, before the first update, from the input checkpoint (TRL's
 *    `precompute_ref_log_probs`): the policy starts as the reference, so no second model is held;
 * 3. each step: policy log-probs of chosen and rejected, `dpoLoss` (sigmoid | ipo | hinge | robust
 *    with beta and label smoothing), AdamW with warmup + cosine;
 * 4. metrics under TRL's names: rewards/chosen, rewards/rejected, rewards/margins,
 *    rewards/accuracies (share of pairs whose chosen reward beats the rejected one).
 *
 *   dpo:
 *     uses: dpo
 *     needs: [sample, sft, cot, icl]
 *     with: { beta: 0.1, loss_type: sigmoid, learning_rate: 2.0e-4 }
 */
import type { Scalar, Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { defineStage } from '../../pipeline/api.ts';
import { readSftSet } from '../lib/artifacts/sft-set.ts';
import { balancePairs, buildPairs } from './pairs.ts';
import { evalPromptsParam, loraParam, maxNewTokensParam, optimizerParams, RENAMED_DPO_PARAMS } from '../lib/judge/training-params.ts';
import { mean } from '../lib/relevance/grade-agreement.ts';

const params = z.strictObject({
  beta: z.number().positive().default(0.1).describe('DPO temperature β: how far the policy may move from the reference'),
  loss_type: z.enum(['sigmoid', 'ipo', 'hinge', 'robust']).default('sigmoid').describe('sigmoid (DPO), ipo, hinge (RSO) or robust (rDPO)'),
  label_smoothing: z.number().min(0).lt(0.5).default(0).describe('Assumed probability that a preference is flipped (cDPO / robust DPO)'),
  pairs_per_prompt: z.number().int().positive().default(1).describe('Pairs drawn per prompt (distinct rejected samples)'),
  ...optimizerParams({ learning_rate: 2e-4, warmup_steps: 4, weight_decay: 0, checkpoint_every: 20 }),
  batch_size: z.number().int().positive().default(8).describe('Pairs per optimizer step'),
  epochs: z.number().positive().default(1).describe('Passes over the pairs (fractions allowed)'),
  max_steps: z.number().int().min(0).default(0).describe('Stop after this many steps (0 = epochs decide)'),
  max_length: z.number().int().positive().default(512).describe('Pairs whose prompt + longer completion exceed this are skipped and counted'),
  eval_prompts: evalPromptsParam(32, 'before and after training'),
  max_new_tokens: maxNewTokensParam(160),
  lora: loraParam,
});

export default defineStage({
  name: 'dpo',
  version: '3',
  description: 'DPO on correct vs incorrect samples (teacher CoT chosen where none is correct); TRL loss types',
  params,
  renamedParams: RENAMED_DPO_PARAMS,
  produces: 'checkpoint',
  resources: 'train',
  requires: () => ['checkpoint', 'samples'],
  async run(ctx) {
    const p = ctx.params;
    const engineLib = await import('#engine');
    const tf = await import('@tensorflow/tfjs-core');
    const { dpoLoss } = await import('../lib/rl/losses.ts');
    const { loadPolicy, promptIds, completionIds } = await import('../lib/judge/model.ts');
    const { greedyAccuracy, probeSample } = await import('../lib/judge/accuracy-probe.ts');
    const { readPromptRecords } = await import('../lib/artifacts/prompts.ts');
    const { readSampledPrompts } = await import('../lib/artifacts/samples.ts');
    const { epochReader, finishTraining, runTrainingLoop, trainableModel } = await import('../lib/judge/training.ts');

    const { policy, engine } = await loadPolicy(ctx.inputs.one('checkpoint').dir, ctx.engine, ctx.log);
    const samples = await readSampledPrompts(ctx.inputs.one('samples').dir, 'train');
    const sftSet = ctx.inputs.many('sft-set')[0];
    const teacher = new Map(sftSet ? (await readSftSet(sftSet.dir, 'train')).map((r) => [r.id, r.completion]) : []);
    const built = buildPairs(samples, teacher, p.pairs_per_prompt, ctx.rng.fork('pairs'));
    const { counts } = built;
    const { readRlPool } = await import('../lib/artifacts/checkpoint.ts');
    const balance = (await readRlPool(ctx.inputs.one('checkpoint').dir))?.balance;
    const pairs = balancePairs(built.pairs, balance, ctx.rng.fork('balance'));
    ctx.log.info(`pairs: ${pairs.length} ${JSON.stringify(counts)}${sftSet ? '' : ' (no sft-set in needs: no teacher fallback)'}${balance ? `, drawn grade-balanced (temper ${balance.temper}, cap ${balance.cap})` : ''}`);

    const { tokenizer, model } = policy;
    const tokenized = pairs.map((pair) => {
      const prompt = promptIds(tokenizer, policy.format, pair.messages);
      return { prompt, chosen: completionIds(tokenizer, pair.chosen), rejected: completionIds(tokenizer, pair.rejected) };
    });
    const fitting = tokenized.filter((t) => t.prompt.length + Math.max(t.chosen.length, t.rejected.length) <= Math.min(p.max_length, model.config.max_position_embeddings));
    const skippedTooLong = tokenized.length - fitting.length;
    if (skippedTooLong > 0) ctx.log.warn(`skipped ${skippedTooLong} of ${tokenized.length} pairs longer than max_length ${p.max_length}`);
    if (fitting.length === 0) {
      const why = `${counts.allCorrect} had every sample right, ${counts.noChosen} none right${sftSet ? ' and no teacher rationale' : ''}${skippedTooLong > 0 ? `, ${skippedTooLong} pairs were longer than max_length ${p.max_length}` : ''}`;
      const more = `more prompts (sample's pool_share, sft's rl_pool), more samples a prompt (sample's num_generations)${sftSet ? '' : ", or cot in dpo's needs (the teacher's rationale as chosen where no sample is right)"}`;
      throw new Error(`no preference pair to train on from ${counts.prompts} sampled prompts (${why}); give it ${more}`);
    }

    // Sequence log-prob per row: a sum, or for IPO the per-token mean (TRL feeds IPO averages).
    const sequenceScores = (rows: { prompt: number[]; completion: number[] }[], frozen: boolean): Tensor1D => {
      const { logprobs, mask } = engineLib.sequenceLogprobs(model, rows, { frozen });
      const sums = tf.sum(logprobs, 1) as Tensor1D;
      return p.loss_type === 'ipo' ? (tf.div(sums, tf.sum(mask, 1)) as Tensor1D) : sums;
    };
    const rowsOf = (batch: typeof fitting) => [
      ...batch.map((t) => ({ prompt: t.prompt, completion: t.chosen })),
      ...batch.map((t) => ({ prompt: t.prompt, completion: t.rejected })),
    ];

    const probeRecords = await probePrompts();
    const probe = () => greedyAccuracy(policy, probeRecords, { maxNewTokens: p.max_new_tokens, batchSize: 16, rng: ctx.rng.fork('probe'), signal: ctx.signal });
    const before = await probe();
    ctx.log.info(`dev probe before: ${JSON.stringify(before)}`);

    // Reference log-probs, once, from the input weights (before any resumed state is restored).
    const reference: { chosen: number[]; rejected: number[] } = { chosen: [], rejected: [] };
    for (let i = 0; i < fitting.length; i += p.batch_size) {
      ctx.signal.throwIfAborted();
      const batch = fitting.slice(i, i + p.batch_size);
      const scores = tf.tidy(() => sequenceScores(rowsOf(batch), true));
      const values = Array.from(await scores.data());
      scores.dispose();
      reference.chosen.push(...values.slice(0, batch.length));
      reference.rejected.push(...values.slice(batch.length));
      ctx.progress.update(Math.min(i + p.batch_size, fitting.length), fitting.length, 'reference pairs');
    }

    // The reference log-probs above came from the model before adapters (B = 0 adds nothing anyway).
    const optimizer = new engineLib.AdamW(await trainableModel(ctx, model, p.lora), engineLib.adamWOptionsSchema.parse({ weight_decay: p.weight_decay }));
    const stepsPerEpoch = Math.ceil(fitting.length / p.batch_size);
    const totalSteps = p.max_steps > 0 ? p.max_steps : Math.max(1, Math.round(stepsPerEpoch * p.epochs));
    const indices = fitting.map((_, i) => i);
    // The order of an epoch is a pure function of (seed, epoch): a resumed run sees the same batches.
    const readEpoch = epochReader(stepsPerEpoch, (epoch) => ctx.rng.fork(`epoch-${epoch}`).shuffle([...indices]));
    let lastRewards = { chosen: 0, rejected: 0, accuracy: 0 };
    // Throughput as sft logs it: real tokens (prompt and completion, chosen and rejected rows) per second of training.
    const trainingStarted = performance.now();
    let tokensSeen = 0;
    const step = await runTrainingLoop(ctx, {
      model,
      optimizer,
      settings: p,
      totalSteps,
      stepsPerEpoch,
      batch(step) {
        const { data: order, index } = readEpoch(step);
        const start = index * p.batch_size;
        const batchIndices = order.slice(start, start + p.batch_size);
        return {
          pairs: batchIndices.map((i) => fitting[i] as (typeof fitting)[number]),
          refChosen: batchIndices.map((i) => reference.chosen[i] as number),
          refRejected: batchIndices.map((i) => reference.rejected[i] as number),
        };
      },
      async trainStep({ pairs: batch, refChosen, refRejected }, { lr, maxGradNorm, signal }) {
        let kept: Tensor[] = [];
        const result = await engineLib.trainStep(
          model,
          optimizer,
          [batch],
          (pairsBatch) => {
            const scores = sequenceScores(rowsOf(pairsBatch), false);
            const n = pairsBatch.length;
            const out = dpoLoss(
              tf.slice(scores, 0, n) as Tensor1D,
              tf.slice(scores, n, n) as Tensor1D,
              tf.tensor1d(refChosen),
              tf.tensor1d(refRejected),
              { type: p.loss_type, beta: p.beta, labelSmoothing: p.label_smoothing },
            );
            kept = [tf.keep(out.chosenRewards), tf.keep(out.rejectedRewards)]; // read after the step: webgpu reads are async
            // trainStep divides by the summed weight: return the batch sum, weighted by pair count.
            return { loss: tf.mul(out.loss, n) as Scalar, weight: n };
          },
          { lr, maxGradNorm, signal },
        );
        const rewards = { chosen: Array.from(await kept[0]!.data()), rejected: Array.from(await kept[1]!.data()) };
        tf.dispose(kept);
        tokensSeen += batch.reduce((n, t) => n + 2 * t.prompt.length + t.chosen.length + t.rejected.length, 0);
        lastRewards = {
          chosen: mean(rewards.chosen),
          rejected: mean(rewards.rejected),
          accuracy: mean(rewards.chosen.map((c, i) => (c > (rewards.rejected[i] as number) ? 1 : 0))),
        };
        return {
          loss: result.loss,
          grad_norm: result.gradNorm,
          'rewards/chosen': lastRewards.chosen,
          'rewards/rejected': lastRewards.rejected,
          'rewards/margins': lastRewards.chosen - lastRewards.rejected,
          'rewards/accuracies': lastRewards.accuracy,
          tokens_per_s: tokensSeen / ((performance.now() - trainingStarted) / 1000),
        };
      },
    });

    const probed = await finishTraining(ctx, policy, optimizer, step, before, probe);
    return {
      engine,
      metrics: {
        steps: step,
        pairs: fitting.length,
        skipped_too_long: skippedTooLong,
        pairs_from_samples: counts.fromSamples,
        pairs_from_teacher: counts.fromTeacher,
        prompts_all_correct: counts.allCorrect,
        prompts_no_chosen: counts.noChosen,
        'rewards/accuracies': lastRewards.accuracy,
        ...probed,
      },
    };

    async function probePrompts() {
      const prompts = ctx.inputs.many('prompts')[0];
      if (!prompts || p.eval_prompts === 0) return [];
      return probeSample(await readPromptRecords(prompts.dir, 'dev'), p.eval_prompts, ctx.seed);
    }
  },
});
