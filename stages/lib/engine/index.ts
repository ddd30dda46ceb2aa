/**
 * The model engine on TensorFlow.js: what SFT, sampling, DPO, GRPO and eval call. Functions take
 * token ids; tokenizers live beside this module (tokenizer*.ts) and are the caller's to apply.
 *
 * Start with `await initEngine(ctx.engine, ctx.log)` (once per process; idempotent), then
 * `createModel(presets.tiny(vocab), rng)` or `loadModel(dir)`. The engine imports nothing from the
 * pipeline: randomness, logging and cancellation come in as arguments (host.ts).
 */
export type { RandomSource, EngineLogger, EngineOptions, EngineRecord } from './host.ts';
export { initEngine, type BackendName } from './backend.ts';
export { modelConfigSchema, parseModelConfig, readModelConfig, presets, modelDims, type ModelConfig, type ModelConfigInput, type PresetName } from './config.ts';
export { createModel, disposeModel, releaseFrozenWeights, forward, hiddenStates, logitsAt, maskedLmLoss, parameterCount, parameterShapes, type ForwardOptions, type ForwardOutput, type Model } from './model.ts';
export { loadModel, saveModel, type SpecialTokenIds } from './checkpoint.ts';
export { readSafetensors, writeSafetensors, readModelWeights } from './safetensors.ts';
export { generate, type GenerateOptions, type Generation } from './generate.ts';
export { penalizeRepetition, sampleToken, type SamplingOptions } from './sampling.ts';
export { sequenceLogprobs, type PromptCompletion, type SequenceLogprobs } from './logprobs.ts';
export { maskedCrossEntropy, tokenLogprobs } from './loss.ts';
export { stopGradient } from './layers.ts';
export { AdamW, adamWOptionsSchema, clipByGlobalNorm, warmupCosineLr, type AdamWOptions, type LrSchedule } from './optim.ts';
export {
  accumulateGradients,
  causalLmLoss,
  trainStep,
  lengthBucketedBatches,
  padBatch,
  saveTrainingState,
  loadTrainingState,
  type WeightedLoss,
  type StepOptions,
  type StepResult,
  type TokenizedExample,
  type PaddedBatch,
} from './train.ts';
export { resolveRanks, startDataParallel, type DataParallelTrainer, type StepTimes } from './data-parallel.ts';
export {
  addLora,
  loadAdapter,
  saveAdapter,
  trainableParams,
  withoutAdapters,
  memoryPerParameter,
  describeMemory,
  loraOptionsSchema,
  peftName,
  LORA_TARGETS,
  type LoraOptions,
  type MemoryPerParameter,
} from './lora.ts';
