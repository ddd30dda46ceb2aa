/**
 * The training-loop edges dpo and grpo share: resuming from the latest step checkpoint, saving one
 * every N steps, and finishing (the accuracy probe after training, the checkpoint written, memory
 * released). The loops themselves stay in the stages.
 */
import { join } from 'node:path';
import { type EngineConfig, Rng, type StageContext } from '../../pipeline/api.ts';
import type { AdamW, LoraOptions, Model } from '#engine';
import type { Policy } from './judge/model.ts';
import { probeMetrics, type AccuracyProbe } from './judge/accuracy-probe.ts';

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
 * returns the step to continue from (0 when there is none).
 */
export async function resumeTraining(ctx: StageContext<unknown>, model: Model, optimizer: AdamW): Promise<number> {
  return (await resumeTrainingWithState(ctx, model, optimizer)).step;
}

/**
 * `resumeTraining`, also returning the loop state saved beside the weights (running totals, a
 * reward curve), so a resumed run reports what an uninterrupted one reports.
 */
export async function resumeTrainingWithState<State>(ctx: StageContext<unknown>, model: Model, optimizer: AdamW): Promise<{ step: number; state?: State }> {
  const { loadTrainingState } = await import('#engine');
  const latest = await ctx.checkpoints.latest<{ step: number; loop?: State }>();
  if (!latest) return { step: 0 };
  loadTrainingState(latest.dir, model, optimizer);
  ctx.log.info(`resumed from step ${latest.step}`);
  return { step: latest.step, state: latest.state.loop };
}

/**
 * Saves a step checkpoint (weights, AdamW moments, step, and the loop's `state` when given) every
 * `every` steps, except after the last.
 */
export async function saveStepCheckpoint(ctx: StageContext<unknown>, step: number, total: number, every: number, model: Model, optimizer: AdamW, state?: unknown): Promise<void> {
  if (step % every !== 0 || step >= total) return;
  const { saveTrainingState } = await import('#engine');
  await ctx.checkpoints.save(step, state === undefined ? { step } : { step, loop: state }, (dir) => saveTrainingState(dir, model, optimizer));
}

/**
 * Probes accuracy after training (logged at `step` beside the probe before), writes the policy as
 * the stage's checkpoint and releases its memory. Returns the probe figures for the manifest.
 */
export async function finishTraining(
  ctx: StageContext<unknown>,
  policy: Policy,
  optimizer: AdamW,
  step: number,
  before: AccuracyProbe,
  probe: () => Promise<AccuracyProbe>,
): Promise<Record<string, number>> {
  const { releasePolicy } = await import('./judge/model.ts');
  await policy.inference.refresh(); // the probe decodes the trained weights
  const after = await probe();
  ctx.log.info(`dev probe after: ${JSON.stringify(after)}`);
  const probed = probeMetrics(before, after);
  ctx.metrics.log(step, probed);
  await savePolicy(policy, ctx.outDir, ctx.engine);
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
  const { writeCompletionFormat, writeInferenceExport } = await import('./judge/model.ts');
  // float32 whatever the base was stored in: bf16 would round small trained updates away (SaveOptions.dtype).
  await saveModel(policy.model, outDir, policy.tokenizer, { dtype: 'float32' });
  if (policy.model.lora) {
    const { saveAdapter } = await import('#engine');
    await saveAdapter(policy.model, join(outDir, ADAPTER_FOLDER), { baseModel: policy.dir });
  }
  await copyTokenizerFiles(policy.tokenizer.dir, outDir);
  // The RL pool the SFT checkpoint held out stays with every checkpoint trained from it.
  const { carryRlPool } = await import('./rl/pool.ts');
  await carryRlPool(policy.dir, outDir);
  await writeCompletionFormat(outDir, policy.format);
  await writeInferenceExport(policy.model, outDir, engine);
}
