/**
 * sft: supervised fine-tuning on the verified chain-of-thought (LORE §3.2, TaoSR1 stage 1).
 *
 * From scratch (the default) it trains a byte-level BPE tokenizer on the SFT text and a Llama-style
 * model from a preset; with `init:` it starts from a Hugging Face folder and its tokenizer. The loss
 * is on completion tokens only. Every `eval_every` steps it measures dev loss and, on a seeded sample
 * of dev prompts, greedy-decoding format validity, Acc@4, Acc@2 and macro-F1; with the icl stage in
 * `needs` the sample is drawn from all dev prompts (the cot set's dev split holds only the examples
 * the teacher got right) and the lexical baseline is scored on the same sample. Step checkpoints (weights, AdamW moments,
 * step) let a killed run resume and end where an uninterrupted one ends: the batch order of each
 * epoch is a pure function of (seed, epoch), so the data position is the step number.
 *
 *   sft:
 *     uses: sft
 *     needs: [cot, icl]
 *     with: { preset: tiny, epochs: 3, learning_rate: 2e-3 }
 */
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { defineStage, Rng } from '../../pipeline/api.ts';
import { readSftSet, type SftRecord } from '../lib/artifacts/sft-set.ts';
import type { ProbeRecord } from '../lib/judge/accuracy-probe.ts';
import { modelOverridesSchema, modelWeightFiles } from '#engine/schema';
import { evalPromptsParam, loraParam, maxNewTokensParam, optimizerParams, RENAMED_SFT_PARAMS } from '../lib/judge/training-params.ts';
import { balancedDraw, gradeBalanceSchema, type GradeBalance } from '../lib/relevance/grade-balance.ts';
import { GRADES, type Grade } from '../lib/relevance/types.ts';

const modelOverrides = modelOverridesSchema
  .default({})
  .describe("Overrides of the preset's shape (HF config.json names)");

const params = z.strictObject({
  init: z.string().nullable().default(null).describe('HF model folder to start from (relative to the config); null trains from scratch, or starts from a checkpoint in needs (e.g. pretrain)'),
  lora: loraParam,
  preset: z.enum(['tiny', 'small']).default('tiny').describe('Model shape when training from scratch: tiny ~1M, small ~10M parameters'),
  model: modelOverrides,
  drop_system_prompt: z
    .boolean()
    .default(false)
    .describe('Train (and later sample and evaluate) without the system message: for small models trained from scratch'),
  vocab_size: z.number().int().min(300).default(1024).describe('Tokenizer size when training from scratch'),
  epochs: z.number().positive().default(3).describe('Passes over the SFT set (fractions allowed)'),
  max_steps: z.number().int().min(0).default(0).describe('Stop after this many optimizer steps (0 = epochs decide)'),
  // Optional rather than default(0), so configs that leave it out keep their fingerprints (and
  // their cached checkpoints) across the upgrade that added it.
  min_steps: z
    .number()
    .int()
    .min(0)
    .optional()
    .describe('At least this many optimizer steps whatever epochs give: a small SFT set gets more passes, so a model trained from scratch gets the updates it needs to learn the format (0 = epochs decide; max_steps wins)'),
  // Optional, like min_steps, so configs that leave them out keep their fingerprints.
  max_epochs: z
    .number()
    .positive()
    .optional()
    .describe('At most this many passes when min_steps raises the steps: a very small set is not memorised (absent = min_steps decides)'),
  step_budget: z
    .number()
    .int()
    .min(1)
    .optional()
    .describe("At most this many optimizer steps from epochs and min_steps: a large set takes fewer passes, so the run's cost stops growing with the data (absent = no cap; max_steps wins)"),
  batch_size: z.number().int().positive().default(16).describe('Examples per micro-batch'),
  grad_accum: z.number().int().positive().default(1).describe('Micro-batches per optimizer step'),
  ...optimizerParams({ learning_rate: 2e-3, warmup_steps: 20, weight_decay: 0.1, checkpoint_every: 50 }),
  max_length: z.number().int().positive().default(512).describe('Examples longer than this (prompt + completion tokens) are skipped and counted'),
  eval_every: z.number().int().min(0).default(100).describe('Evaluate on dev every N steps (0 = only at the end)'),
  eval_loss_examples: z.number().int().min(0).default(128).describe('Dev examples scored for dev loss per evaluation (0 = all)'),
  eval_prompts: evalPromptsParam(48, 'at each evaluation'),
  max_new_tokens: maxNewTokensParam(160),
  rl_pool: z
    .number()
    .min(0)
    .max(0.9)
    .default(0)
    .describe('Share of the train queries held out of SFT for sample/dpo/grpo to draw from (stages/lib/rl/pool.ts); 0 = none'),
  grade_balance: gradeBalanceSchema,
});

type Params = z.output<typeof params>;

/** An init folder's weight files; a folder without them lists model.safetensors, which the plan then reports missing. */
function initWeightFiles(dir: string): string[] {
  try {
    return modelWeightFiles(dir);
  } catch {
    return ['model.safetensors'];
  }
}

/**
 * Optimizer steps of a run: max_steps when set; else the epochs' steps, raised to min_steps but to
 * no more than max_epochs passes, and capped by step_budget. Examples (batches of 16): 878 examples
 * are 55 steps an epoch; epochs 3 give 165, min_steps 400 gives 400 (7.3 epochs; max_epochs 8
 * allows 440). 2,183 examples (137 an epoch) give 411 either way. 352 examples (22 an epoch) with
 * max_epochs 8: 176, not 400 (18 passes). 6,800 examples (425 an epoch) with step_budget 600: 600,
 * not 1,275.
 */
export function sftSteps(stepsPerEpoch: number, p: Pick<Params, 'epochs' | 'min_steps' | 'max_steps' | 'max_epochs' | 'step_budget'>): number {
  if (p.max_steps > 0) return p.max_steps;
  const byEpochs = Math.round(stepsPerEpoch * p.epochs);
  const floor = Math.min(p.min_steps ?? 0, p.max_epochs === undefined ? Infinity : Math.round(stepsPerEpoch * p.max_epochs));
  return Math.max(1, Math.min(p.step_budget ?? Infinity, Math.max(floor, byEpochs)));
}

/**
 * The examples of one epoch: the train set itself, or with grade balance a draw of its size
 * weighted by grade (stages/lib/relevance/grade-balance.ts), a pure function of (seed, epoch) so a
 * resumed run sees the same epoch.
 */
export function epochExamples<T extends { grade: Grade }>(trainSet: readonly T[], balance: GradeBalance | undefined, seed: number, epoch: number): readonly T[] {
  return balance ? balancedDraw(trainSet, (e) => e.grade, balance, trainSet.length, new Rng(seed, `sft/balance-${epoch}`)) : trainSet;
}

export default defineStage({
  name: 'sft',
  // 5: eval_prompts 0 probes no dev prompt (it probed all of them), as in dpo and grpo.
  version: '5',
  description: 'Supervised fine-tuning on verified chain-of-thought (tokenizer + model from scratch, or from an HF folder)',
  params,
  renamedParams: RENAMED_SFT_PARAMS,
  produces: 'checkpoint',
  resources: 'train',
  requires: () => ['sft-set'],
  // The weights as the folder holds them: model.safetensors, or the index and every shard it names.
  userFiles: (p: Params, configDir: string) => (p.init ? ['config.json', ...initWeightFiles(resolve(configDir, p.init))].map((f) => join(p.init as string, f)) : []),
  async run(ctx) {
    const p = ctx.params;
    const engineLib = await import('#engine');
    const { loadTokenizer, trainBpeTokenizer } = await import('#engine/tokenizer');
    const policyLib = await import('../lib/judge/model.ts');
    const checkpointFiles = await import('../lib/artifacts/checkpoint.ts');
    const accuracyProbe = await import('../lib/judge/accuracy-probe.ts');
    const { readPromptRecords } = await import('../lib/artifacts/prompts.ts');
    const { causalLmSteps, epochReader, runTrainingLoop, savePolicy, trainableModel } = await import('../lib/judge/training.ts');
    if (p.lora && !p.init) throw new Error('lora needs init: adapters train on a pretrained model (set init to an HF folder)');
    const tf = await import('@tensorflow/tfjs-core');
    const engine = await engineLib.initEngine(ctx.engine, ctx.log);

    const setDir = ctx.inputs.one('sft-set').dir;
    const { holdOutQueries, inRlPool } = await import('../lib/rl/pool.ts');
    const { carryRlPool, writeRlPool } = await import('../lib/artifacts/checkpoint.ts');
    const sftSet = await readSftSet(setDir, 'train');
    // The RL pool's queries are held out here, so the RL stages draw prompts this model has not memorised.
    const rlPool = p.rl_pool > 0 ? holdOutQueries(sftSet.map((r) => r.example), p.rl_pool, ctx.seed) : undefined;
    const train = rlPool ? sftSet.filter((r) => !inRlPool(rlPool, r.example)) : sftSet;
    if (rlPool) ctx.log.info(`RL pool: ${rlPool.queries.length} train queries (${sftSet.length - train.length} examples) held out of SFT`);
    const { resolveGradeBalance } = await import('../lib/relevance/grade-balance.ts');
    const gradeBalance = resolveGradeBalance(p.grade_balance, train.map((r) => r.example));
    if (gradeBalance.balance) {
      ctx.log.info(`grade balance: train shares ${fmtGrades(gradeBalance.metrics, 'grade_share_')} drawn as ${fmtGrades(gradeBalance.metrics, 'grade_balanced_share_')}`);
      if (rlPool) rlPool.balance = gradeBalance.balance;
    }
    const dev = await readSftSet(setDir, 'dev').catch(() => [] as SftRecord[]);
    const format = { ...(await checkpointFiles.readCompletionFormat(setDir)), dropSystemPrompt: p.drop_system_prompt };
    if (train.length === 0) throw new Error(`the SFT set ${setDir}/train.jsonl is empty`);
    // The accuracy probe: a sample of the prompts artifact's dev split when it is an input, else of the
    // SFT set's dev split; `eval_prompts: 0` probes nothing, as it does in dpo and grpo (one key, one
    // meaning: probeSample alone reads 0 as "all").
    const promptsDir = ctx.inputs.many('prompts')[0]?.dir;
    if (!promptsDir && p.eval_prompts > 0) {
      ctx.log.warn('probing dev accuracy on the cot dev split, which holds only examples the teacher got right: add the icl stage to needs for an unbiased probe');
    }
    const probe: ProbeRecord[] = p.eval_prompts === 0 ? [] : accuracyProbe.probeSample<ProbeRecord>(promptsDir ? await readPromptRecords(promptsDir, 'dev') : dev, p.eval_prompts, ctx.seed);
    const baseline = promptsDir && probe.length > 0 ? await accuracyProbe.baselineAccuracy(promptsDir, probe) : undefined;
    if (baseline) ctx.log.info(`lexical baseline on the ${probe.length} dev probe prompts: ${JSON.stringify(baseline)}`);

    // Tokenizer: the init model's, or one trained on this SFT text (deterministic, so a resumed
    // run that retrains it gets the same ids).
    // A checkpoint in needs (the pretrain stage's) is where training starts, like `init:`.
    const initDir = p.init ? resolve(ctx.configDir, p.init) : ctx.inputs.many('checkpoint')[0]?.dir;
    let tokenizerDir: string;
    if (initDir) tokenizerDir = initDir;
    else {
      tokenizerDir = join(ctx.workDir, 'tokenizer');
      const texts = train.flatMap((r) => [...r.messages.filter((m) => !p.drop_system_prompt || m.role !== 'system').map((m) => m.content), r.completion]);
      const result = await trainBpeTokenizer(texts, { vocabSize: p.vocab_size, extraTokens: ['<think>', '</think>', '<answer>', '</answer>'] }, tokenizerDir);
      ctx.log.info(`tokenizer: ${JSON.stringify(result)}`);
    }
    const tokenizer = await loadTokenizer(tokenizerDir);

    let skipped = 0;
    const tokenize = (records: SftRecord[]) =>
      records.flatMap((r) => {
        const prompt = policyLib.promptIds(tokenizer, format, r.messages);
        const completion = policyLib.completionIds(tokenizer, r.completion);
        if (prompt.length + completion.length > p.max_length) {
          skipped++;
          return [];
        }
        return [{ id: r.id, grade: r.example.label, ids: [...prompt, ...completion], lossMask: [...prompt.map(() => 0), ...completion.map(() => 1)] }];
      });
    const trainSet = tokenize(train);
    const skippedTrain = skipped;
    const devSet = tokenize(p.eval_loss_examples > 0 ? dev.slice(0, p.eval_loss_examples) : dev);
    if (skippedTrain > 0) ctx.log.warn(`skipped ${skippedTrain} train examples longer than max_length ${p.max_length}`);
    if (trainSet.length === 0) throw new Error(`every train example is longer than max_length ${p.max_length}`);

    const model = initDir
      ? engineLib.loadModel(initDir)
      : engineLib.createModel(engineLib.presets[p.preset](tokenizer.vocabSize, { max_position_embeddings: p.max_length, ...p.model }), new Rng(ctx.seed, 'engine/init'));
    ctx.log.info(`model: ${engineLib.parameterCount(model)} parameters, ${model.config.num_hidden_layers} layers, vocab ${model.config.vocab_size}`);
    const optimizer = new engineLib.AdamW(await trainableModel(ctx, model, p.lora), engineLib.adamWOptionsSchema.parse({ weight_decay: p.weight_decay }));

    const perStep = p.batch_size * p.grad_accum;
    const stepsPerEpoch = Math.ceil(trainSet.length / perStep);
    const totalSteps = sftSteps(stepsPerEpoch, p);
    if (totalSteps !== Math.round(stepsPerEpoch * p.epochs) && p.max_steps === 0) {
      const why = totalSteps > Math.round(stepsPerEpoch * p.epochs) ? `min_steps ${p.min_steps}${p.max_epochs !== undefined ? ` (at most ${p.max_epochs} epochs)` : ''}` : `step_budget ${p.step_budget}`;
      ctx.log.info(`${why}: ${totalSteps} steps, ${(totalSteps / stepsPerEpoch).toFixed(1)} epochs of ${trainSet.length} examples instead of ${p.epochs}`);
    }
    let inferenceRecord: Record<string, string> = {};
    let lastProbe: import('../lib/judge/accuracy-probe.ts').AccuracyProbe | undefined;
    const evaluate = async (): Promise<Record<string, number>> => {
      const result: Record<string, number> = {};
      if (devSet.length > 0) {
        let lossSum = 0;
        let weight = 0;
        for (let i = 0; i < devSet.length; i += p.batch_size) {
          const batch = engineLib.padBatch(devSet.slice(i, i + p.batch_size), tokenizer.padTokenId);
          // tidy: the forward pass's logits are large and only the loss leaves this scope.
          const loss = tf.tidy(() => engineLib.causalLmLoss(model, batch).loss);
          lossSum += (await loss.data())[0] as number;
          loss.dispose();
          weight += batch.targetCount;
        }
        result.dev_loss = lossSum / Math.max(1, weight);
      }
      if (probe.length > 0) {
        // A fresh inference path per probe: the weights changed since the last one.
        const inference = await policyLib.openPolicyInference(model, ctx.engine, ctx.log);
        inferenceRecord = inference.record;
        const policy = { dir: ctx.outDir, model, tokenizer, format, inference };
        const accuracy = await accuracyProbe
          .greedyAccuracy(policy, probe, { maxNewTokens: p.max_new_tokens, batchSize: p.batch_size, rng: new Rng(ctx.seed, 'sft/eval'), signal: ctx.signal })
          .finally(() => inference.close());
        lastProbe = accuracy;
        Object.assign(result, { dev_format_valid: accuracy.format_valid, dev_acc4: accuracy.acc4, dev_acc2: accuracy.acc2, dev_macro_f1: accuracy.macro_f1 });
        if (accuracy.degeneracy?.qwk != null) result.dev_qwk = accuracy.degeneracy.qwk;
      }
      return result;
    };

    // Data parallel on the wasm/cpu backends: one replica per core, each taking a share of every batch.
    // LoRA trains in-process: the replicas copy every parameter each step, which adapters avoid.
    const ranks = p.lora ? 1 : engineLib.resolveRanks(ctx.engine.data_parallel, engine.backend);
    const causalLm = causalLmSteps(model, optimizer, { ranks, engine: ctx.engine });
    let started = 0;
    let tokensSeen = 0;
    // The batch order of an epoch is a pure function of (seed, epoch): a resumed run sees the same batches.
    const readEpoch = epochReader(stepsPerEpoch, (epoch) =>
      engineLib.lengthBucketedBatches(epochExamples(trainSet, gradeBalance.balance, ctx.seed, epoch), p.batch_size, new Rng(ctx.seed, `sft/epoch-${epoch}`), (e) => e.ids.length),
    );
    const step = await runTrainingLoop(ctx, {
      model,
      optimizer,
      settings: p,
      totalSteps,
      stepsPerEpoch,
      batch(step) {
        const { data: batches, index } = readEpoch(step);
        // ceil(n / batch_size) batches an epoch (lengthBucketedBatches), so no step of it is empty.
        return batches.slice(index * p.grad_accum, (index + 1) * p.grad_accum).map((b) => engineLib.padBatch(b, tokenizer.padTokenId));
      },
      async trainStep(micro, options) {
        const stepped = await causalLm.trainStep(micro, options);
        // Real tokens only: padding is computed but is not throughput.
        tokensSeen += micro.reduce((n, b) => n + b.attentionMask.reduce((m, row) => m + row.reduce((a, v) => a + v, 0), 0), 0);
        return { ...stepped, tokens_per_s: tokensSeen / ((performance.now() - started) / 1000) };
      },
      evaluation: { every: p.eval_every, run: evaluate },
      async begin(step) {
        await causalLm.begin(step);
        if (ranks > 1) ctx.log.info(`data parallel: ${ranks} ranks`);
        started = performance.now();
      },
      end: causalLm.end,
    });

    const final: Record<string, number> = await evaluate();
    if (baseline) Object.assign(final, { baseline_dev_acc4: baseline.acc4, baseline_dev_acc2: baseline.acc2, baseline_dev_macro_f1: baseline.macro_f1 });
    ctx.metrics.log(step, final);
    ctx.log.info(`final: ${JSON.stringify(final)}`);
    const degeneracy = lastProbe?.degeneracy;
    const shares = degeneracy ? (await import('../lib/relevance/grade-agreement.ts')).describeShares(degeneracy.predictedShares) : '';
    if (degeneracy?.degenerate) ctx.log.warn(`the model is degenerate on the ${probe.length} dev probe prompts: ${degeneracy.reasons.join('; ')} (predicted: ${shares})`);
    await savePolicy({ dir: tokenizerDir, model, tokenizer, format }, ctx.outDir, ctx.engine);
    // Its own RL pool, or the one of the checkpoint it started from (rl-pool.ts).
    if (rlPool) await writeRlPool(ctx.outDir, rlPool);
    else if (initDir) await carryRlPool(initDir, ctx.outDir);
    const parameters = engineLib.parameterCount(model);
    const trainable = [...engineLib.trainableParams(model).values()].reduce((n, v) => n + v.size, 0);
    optimizer.dispose();
    engineLib.disposeModel(model);
    return {
      engine: { ...engine, ...inferenceRecord },
      ...(degeneracy
        ? { checks: [{ name: 'dev-probe-not-degenerate', passed: !degeneracy.degenerate, message: `${degeneracy.degenerate ? `degenerate on the dev probe: ${degeneracy.reasons.join('; ')}; ` : ''}predicted: ${shares}` }] }
        : {}),
      metrics: {
        ...final,
        ...gradeBalance.metrics,
        ...(degeneracy ? { degenerate: degeneracy.degenerate, dev_predicted_shares: degeneracy.predictedShares } : {}),
        dev_probe_prompts: probe.length,
        data_parallel_ranks: ranks,
        steps: step,
        train_examples: trainSet.length,
        skipped_too_long: skippedTrain,
        parameters,
        trainable_parameters: trainable,
      },
    };
  },
});

/** "L1 0.12, L2 0.03, ..." from the metrics named prefix + grade. */
function fmtGrades(metrics: Record<string, number>, prefix: string): string {
  return GRADES.map((g) => `${g} ${(metrics[`${prefix}${g}`] ?? 0).toFixed(2)}`).join(', ');
}
