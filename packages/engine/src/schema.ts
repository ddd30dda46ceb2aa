/**
 * `@lore-pipeline/engine/schema`: what a stage's definition needs from the engine (its params
 * schema, its fingerprint inputs) without loading TensorFlow.js or onnxruntime: the HF
 * `config.json` schema and presets, model overrides, LoRA options (PEFT names), the
 * `generation_config.json` defaults, and which files hold a checkpoint's weights. Every module
 * this entry reaches imports only `zod` and `node:` built-ins (a test in
 * test/pipeline/engine-entry-points.test.ts follows the imports to hold it so); the heavy engine
 * is the `.` entry, imported inside a stage's `run`.
 */
export {
  SUPPORTED_ARCHITECTURES,
  modelConfigSchema,
  modelOverridesSchema,
  parseModelConfig,
  readModelConfig,
  presets,
  modelDims,
  ropeScalingOf,
  type ModelConfig,
  type ModelConfigInput,
  type ModelDims,
  type PresetName,
  type RopeScaling,
} from './model/config.ts';
export { LORA_TARGETS, loraOptionsSchema, type LoraOptions } from './model/lora-options.ts';
export { GENERATION_CONFIG_FILE, generationConfigSchema, readGenerationConfig, generationDefaults, type GenerationConfig } from './generate/generation-config.ts';
export { WEIGHTS_FILE, WEIGHTS_INDEX_FILE, modelWeightFiles } from './io/weight-files.ts';
