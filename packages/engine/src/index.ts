/**
 * `@lore-pipeline/engine`: the model engine on TensorFlow.js, what SFT, sampling, DPO, GRPO and
 * eval call. Functions take token ids; the tokenizers are the `./tokenizer` entry, the ONNX export
 * and onnxruntime sessions `./onnx`, and what a stage's schema needs without TensorFlow.js
 * `./schema`. Importing this module loads tfjs-core: do it inside a stage's `run`.
 *
 * Start with `await initEngine(ctx.engine, ctx.log)` (once per process; idempotent), then
 * `createModel(presets.tiny(vocab), rng)` or `loadModel(dir)`. The engine imports nothing from the
 * pipeline: randomness, logging and cancellation come in as arguments (host.ts).
 */
export type { RandomSource, EngineLogger, EngineOptions, EngineRecord } from './host.ts';
export { initEngine, type BackendName } from './runtime/backend.ts';
export { modelConfigSchema, parseModelConfig, readModelConfig, presets, modelDims, type ModelConfig, type ModelConfigInput, type PresetName } from './model/config.ts';
export { createModel, disposeModel, releaseFrozenWeights, forward, hiddenStates, logitsAt, maskedLmLoss, parameterCount, parameterShapes, type ForwardOptions, type ForwardOutput, type Model } from './model/model.ts';
export { loadModel, saveModel, type SpecialTokenIds } from './io/checkpoint.ts';
export { readSafetensors, writeSafetensors, readModelWeights, writeModelWeights, type TensorValues } from './io/safetensors.ts';
export { generate, type GenerateOptions, type Generation } from './generate/generate.ts';
export { penalizeRepetition, sampleToken, type SamplingOptions } from './generate/sampling.ts';
export { openInference, type Inference, type InferenceChoice, type InferenceOptions } from './generate/inference.ts';
export { sequenceLogprobs, type PromptCompletion, type SequenceLogprobs } from './model/logprobs.ts';
export { maskedCrossEntropy, tokenLogprobs } from './model/loss.ts';
export { stopGradient } from './model/layers.ts';
export { AdamW, adamWOptionsSchema, clipByGlobalNorm, warmupCosineLr, type AdamWOptions, type LrSchedule } from './train/optim.ts';
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
} from './train/train.ts';
export { resolveRanks, startDataParallel, threadCpuMs, threadCpuMsSince, type DataParallelTrainer, type StepTimes } from './train/data-parallel.ts';
export { fusedKernels, setFusedKernels } from './runtime/fused.ts';
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
} from './model/lora.ts';
