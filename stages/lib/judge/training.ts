/**
 * The one training loop of the trainer stages (sft, pretrain, dpo, grpo) and the edges they share.
 *
 * `runTrainingLoop` owns what every trainer does the same way: resuming from the latest step
 * checkpoint (weights, AdamW moments, step, and the loop state a stage keeps), the learning-rate
 * schedule (linear warmup then cosine decay to `min_lr_ratio`), one metrics line per step, the
 * progress bar, abort, evaluation every `eval_every` steps, and step checkpoints. A stage supplies
 * the data reader (the batch of a step) and the training step (its loss, gradients and update), as
 * Hugging Face TRL's trainers override `compute_loss` / `training_step` of one `Trainer`. The keys
 * that configure it are one vocabulary for all four stages (training-params.ts).
 */
import { join } from 'node:path';
import { type EngineConfig, Rng, type StageContext, yieldToEventLoop } from '../../../pipeline/api.ts';
import type { AdamW, DataParallelTrainer, LoraOptions, Model, PaddedBatch } from '#engine';
import type { Policy } from './model.ts';
import { probeMetrics, type AccuracyProbe } from './accuracy-probe.ts';

/** The settings the loop reads (training-params.ts names and documents them). */
export interface LoopSettings {
  learning_rate: number;
  min_lr_ratio: number;
  warmup_steps: number;
  max_grad_norm: number;
  checkpoint_every: number;
}

/** One step's metrics as a stage reports them; null where a figure has no value this step. */
export type StepMetrics = Record<string, number | null>;

export interface TrainingLoop<Batch, LoopState = never> {
  model: Model;
  optimizer: AdamW;
  settings: LoopSettings;
  totalSteps: number;
  /** Steps per pass over the data, for the `epoch` curve; absent where steps are not passes (grpo's rollouts). */
  stepsPerEpoch?: number;
  /**
   * The data reader: the batch of 0-based step `step`. A pure function of (seed, step), so a
   * resumed run sees the batches an uninterrupted one sees.
   */
  batch(step: number): Batch | Promise<Batch>;
  /** One optimizer step on `batch` (the loss, its gradients, the update); returns the step's metrics. */
  trainStep(batch: Batch, options: { step: number; lr: number; maxGradNorm: number; signal: AbortSignal }): Promise<StepMetrics>;
  /**
   * Evaluation every `every` steps (0 = never) except after the last, its figures added to that
   * step's metrics line. The evaluation after the last step is the stage's (it also reports it).
   */
  evaluation?: { every: number; run(): Promise<Record<string, number>> };
  /** What a resumed run must restore beyond weights and moments (running totals, a reward curve). */
  state?: { save(): LoopState; restore(saved: LoopState): void };
  /** After resuming, before the first step (start data-parallel replicas, refresh an inference session). */
  begin?(step: number): Promise<void>;
  /** However the loop ends, once `begin` has run (stop replicas). */
  end?(): Promise<void>;
}

/**
 * A data reader's view of epochs: step -> the data of its epoch (made by `makeEpoch`, a pure function
 * of the epoch, once per epoch) and the step's index within it.
 */
export function epochReader<T>(stepsPerEpoch: number, makeEpoch: (epoch: number) => T): (step: number) => { data: T; index: number } {
  let current: { epoch: number; data: T } | undefined;
  return (step) => {
    const epoch = Math.floor(step / stepsPerEpoch);
    if (current?.epoch !== epoch) current = { epoch, data: makeEpoch(epoch) };
    return { data: current.data, index: step % stepsPerEpoch };
  };
}

/**
 * Runs `loop` from the latest step checkpoint (or step 0) to `totalSteps`; returns the step reached.
 * Each step: abort check, batch, lr (linear warmup, then cosine decay to learning_rate x
 * min_lr_ratio), training step, metrics line (`lr`, `epoch`, the stage's figures, an evaluation
 * when due), progress, a yield to the event loop (so a signal or a progress tick is handled), and a
 * step checkpoint every `checkpoint_every` steps except after the last.
 */
export async function runTrainingLoop<Batch, LoopState = never>(ctx: StageContext<unknown>, loop: TrainingLoop<Batch, LoopState>): Promise<number> {
  const { model, optimizer, settings, totalSteps, stepsPerEpoch } = loop;
  const { warmupCosineLr } = await import('#engine');
  const schedule = { peak: settings.learning_rate, warmup: settings.warmup_steps, total: totalSteps, min: settings.learning_rate * settings.min_lr_ratio };
  const resumed = await resumeTraining<LoopState>(ctx, model, optimizer);
  let step = resumed.step;
  if (resumed.state !== undefined) loop.state?.restore(resumed.state);
  await loop.begin?.(step);
  try {
    while (step < totalSteps) {
      ctx.signal.throwIfAborted();
      const batch = await loop.batch(step);
      const lr = warmupCosineLr(step, schedule);
      const stepped = await loop.trainStep(batch, { step, lr, maxGradNorm: settings.max_grad_norm, signal: ctx.signal });
      step++;
      const values: StepMetrics = { ...stepped, lr, ...(stepsPerEpoch === undefined ? {} : { epoch: step / stepsPerEpoch }) };
      const every = loop.evaluation?.every ?? 0;
      if (loop.evaluation && every > 0 && step % every === 0 && step < totalSteps) Object.assign(values, await loop.evaluation.run());
      ctx.metrics.log(step, values);
      ctx.progress.update(step, totalSteps, 'steps');
      await yieldToEventLoop();
      if (step % settings.checkpoint_every === 0 && step < totalSteps) await saveStepCheckpoint(ctx, step, model, optimizer, loop.state?.save());
    }
  } finally {
    await loop.end?.();
  }
  return step;
}

/**
 * The training step of a causal-LM trainer (pretrain, sft): the next-token loss over the masked
 * targets on data-parallel replicas (one per core on the wasm/cpu backends, the engine's
 * startDataParallel), started in `begin` from the resumed weights and stopped in `end`.
 */
export function causalLmSteps(model: Model, optimizer: AdamW, options: { ranks: number; engine: EngineConfig }): Required<Pick<TrainingLoop<PaddedBatch[]>, 'trainStep' | 'begin' | 'end'>> {
  let replicas: DataParallelTrainer | undefined;
  return {
    async trainStep(micro, { lr, maxGradNorm, signal }) {
      if (!replicas) throw new Error('Internal error: a causal-LM training step before the replicas started');
      const result = await replicas.step(micro, { lr, maxGradNorm, signal });
      return { loss: result.loss, grad_norm: result.gradNorm };
    },
    async begin() {
      const { startDataParallel } = await import('#engine');
      replicas = await startDataParallel(model, optimizer, options);
    },
    async end() {
      await replicas?.close();
    },
  };
}

/**
 * With `lora` set, freezes `model` and adds adapters (seeded by the stage), and logs the memory per
 * parameter either way. Returns what the optimizer trains: the adapters, or every parameter.
 */
export async function trainableModel(ctx: StageContext<unknown>, model: Model, lora: LoraOptions | null): Promise<Map<string, import('@tensorflow/tfjs-core').Variable>> {
  const { addLora, describeMemory, memoryPerParameter, trainableParams } = await import('#engine');
  if (lora) addLora(model, lora, new Rng(ctx.seed, `${ctx.stage}/lora`));
  ctx.log.info(`${lora ? `LoRA r ${lora.r} on ${lora.target_modules.join(', ')}; ` : ''}${describeMemory(memoryPerParameter(model))}`);
  return trainableParams(model);
}

/** Where a LoRA-trained checkpoint keeps its PEFT adapter (beside the merged weights, which every stage reads). */
export const ADAPTER_FOLDER = 'adapter';

/**
 * Restores the latest step checkpoint of this stage's work folder into `model` and `optimizer`;
 * returns the step to continue from (0 when there is none) and the loop state saved beside it.
 */
async function resumeTraining<State>(ctx: StageContext<unknown>, model: Model, optimizer: AdamW): Promise<{ step: number; state?: State }> {
  const { loadTrainingState } = await import('#engine');
  const latest = await ctx.checkpoints.latest<{ step: number; loop?: State }>();
  if (!latest) return { step: 0 };
  loadTrainingState(latest.dir, model, optimizer);
  ctx.log.info(`resumed from step ${latest.step}`);
  return { step: latest.step, state: latest.state.loop };
}

/** Saves a step checkpoint: weights, AdamW moments, the step, and the loop's `state` when it keeps one. */
async function saveStepCheckpoint(ctx: StageContext<unknown>, step: number, model: Model, optimizer: AdamW, state?: unknown): Promise<void> {
  const { saveTrainingState } = await import('#engine');
  await ctx.checkpoints.save(step, state === undefined ? { step } : { step, loop: state }, (dir) => saveTrainingState(dir, model, optimizer));
}

/**
 * Probes accuracy after training (logged at `step` beside the probe before), writes the policy as
 * the stage's checkpoint, with the RL pool of the checkpoint it was trained from, and releases its
 * memory. Returns the probe figures for the manifest.
 */
export async function finishTraining(
  ctx: StageContext<unknown>,
  policy: Policy,
  optimizer: AdamW,
  step: number,
  before: AccuracyProbe,
  probe: () => Promise<AccuracyProbe>,
): Promise<Record<string, number>> {
  const { releasePolicy } = await import('./model.ts');
  await policy.inference.refresh(); // the probe decodes the trained weights
  const after = await probe();
  ctx.log.info(`dev probe after: ${JSON.stringify(after)}`);
  const probed = probeMetrics(before, after);
  ctx.metrics.log(step, probed);
  await savePolicy(policy, ctx.outDir, ctx.engine);
  // The pool the SFT checkpoint held out travels with each RL checkpoint trained from it, so the
  // next RL stage draws from the same prompts (rl/pool.ts). Said here, by the RL stages' finish,
  // rather than by savePolicy, which writes a model and knows nothing of RL data.
  const { carryRlPool } = await import('../artifacts/checkpoint.ts');
  await carryRlPool(policy.dir, ctx.outDir);
  optimizer.dispose();
  await releasePolicy(policy);
  return probed;
}

/**
 * Writes a trained policy as a checkpoint folder: weights, tokenizer files, the completion format,
 * and its ONNX export unless engine.inference is tfjs.
 */
export async function savePolicy(policy: Pick<Policy, 'dir' | 'model' | 'tokenizer' | 'format'>, outDir: string, engine: EngineConfig): Promise<void> {
  const { saveModel } = await import('#engine');
  const { copyTokenizerFiles } = await import('#engine/tokenizer');
  const { writeCompletionFormat } = await import('../artifacts/checkpoint.ts');
  const { writeInferenceExport } = await import('./model.ts');
  // float32 whatever the base was stored in: bf16 would round small trained updates away (SaveOptions.dtype).
  await saveModel(policy.model, outDir, policy.tokenizer, { dtype: 'float32' });
  if (policy.model.lora) {
    const { saveAdapter } = await import('#engine');
    await saveAdapter(policy.model, join(outDir, ADAPTER_FOLDER), { baseModel: policy.dir });
  }
  await copyTokenizerFiles(policy.tokenizer.dir, outDir);
  await writeCompletionFormat(outDir, policy.format);
  await writeInferenceExport(policy.model, outDir, engine);
}
