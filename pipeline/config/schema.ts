/**
 * The pipeline YAML, as zod schemas. Every key is documented here, once, next to its default;
 * `pipeline stages` and the diagnostics read these schemas, and no other code re-states a default.
 *
 * `with:` is typed loosely here (a map) and validated afterwards against the schema of the stage
 * type named by `uses`, because that type is only known once `uses` itself is valid.
 */
import { z } from 'zod';

/** Stage names become environment variable suffixes (`PIPELINE_INPUT_<NAME>`) and file names. */
export const STAGE_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;

const slurmFields = {
  partition: z.string().optional().describe('Slurm partition (sbatch --partition); the cluster default when absent.'),
  account: z.string().optional().describe('Slurm account to charge (sbatch --account).'),
  time: z.string().default('01:00:00').describe('Wall-clock limit per stage job (sbatch --time).'),
  cpus: z.int().min(1).default(1).describe('CPUs per stage job (sbatch --cpus-per-task).'),
  mem: z.string().default('2G').describe('Memory per stage job (sbatch --mem).'),
  gpus: z.int().min(0).default(0).describe('GPUs per stage job (sbatch --gres=gpu:N); 0 asks for none.'),
  extra_args: z.array(z.string()).default([]).describe('Further sbatch arguments, passed as written.'),
  retries: z.int().min(0).default(0).describe('How often a job that ended in a `retry_on` state is resubmitted.'),
  retry_on: z
    .array(z.string())
    .default(['NODE_FAIL', 'PREEMPTED'])
    .describe('Final job states that count as the cluster failing, not the stage.'),
  poll_s: z.number().positive().default(1).describe('Seconds between job state polls.'),
};

export const slurmSchema = z.strictObject(slurmFields).describe('Slurm job settings for stages run with `executor: slurm`.');

/** Per-stage `slurm:` overrides keys of the top-level block, so nothing here has a default. */
export const slurmOverrideSchema = z.strictObject(
  Object.fromEntries(
    Object.entries(slurmFields).map(([key, field]) => {
      const inner = field instanceof z.ZodDefault ? field.unwrap() : field;
      return [key, (inner as z.ZodType).optional()];
    }),
  ) as { [K in keyof typeof slurmFields]: z.ZodOptional<z.ZodType<z.output<(typeof slurmFields)[K]>>> },
);

export const executorName = z.enum(['local', 'slurm']);

export const engineSchema = z
  .looseObject({
    backend: z
      .enum(['auto', 'webgpu', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'])
      .default('auto')
      .describe('Tensor backend for model stages; auto tries webgpu on a hardware GPU, tensorflow-gpu, tensorflow, wasm, then cpu (webgpu also runs on a software adapter when named).'),
    data_parallel: z
      .union([z.literal('auto'), z.number().int().min(1)])
      .default(1)
      .describe('Training replicas, one per core, that split each batch on the wasm and cpu backends (auto: one per available core); tfjs-node runs its own threads.'),
    inference: z
      .enum(['auto', 'onnxruntime', 'tfjs'])
      .default('auto')
      .describe('What decodes and scores (sample, grpo rollouts, eval, cot teacher, sft probes): onnxruntime runs an ONNX export on every core; auto takes it when onnxruntime-node loads, else tfjs. Training stages also write onnx/model.onnx beside their weights unless this is tfjs.'),
    wasm_threads: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe("Threads of the wasm backend's own kernels (its threaded SIMD binary on worker_threads); absent: 1, the single-threaded binary. The other way to use cores, instead of data_parallel; the fused kernels run only single-threaded."),
  })
  .describe('Passed untouched to model stages; other keys are allowed. Part of every stage fingerprint.');

export const stageConfigSchema = z.strictObject({
  uses: z.string().min(1).describe('A registered stage type (see `pipeline stages`) or a path `./x.ts` to a stage module.'),
  needs: z.array(z.string()).default([]).describe('Stages whose artifacts this stage reads.'),
  with: z.record(z.string(), z.unknown()).default({}).describe("The stage type's params."),
  executor: executorName.optional().describe('Where this stage runs; the top-level `executor` when absent.'),
  slurm: slurmOverrideSchema.optional().describe('Overrides of the top-level `slurm` keys for this stage.'),
  resources: z
    .enum(['light', 'train'])
    .optional()
    .describe("Resource class; the stage type's own when absent (e.g. `train` for an exec stage that trains)."),
  seed_offset: z
    .int()
    .min(1)
    .optional()
    .describe('Added to the pipeline seed for this stage (its seed, RNG and fingerprint): two stages of one type with different offsets draw different initialisations and orders, e.g. the members of an ensemble, and a sweep over `seed` still moves them all.'),
});

export const pipelineConfigSchema = z.strictObject({
  name: z
    .string()
    // Not "." or "..": the name is a folder under refs/, logs/ and runs/ of the store.
    .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/, 'a letter, digit or "_", then letters, digits, "_", "." or "-"')
    .describe('Pipeline name; refs and run records are kept per name, so two configs may share a store.'),
  seed: z.int().min(0).default(0).describe('Seed of every stage RNG; part of every fingerprint.'),
  store: z
    .string()
    .default('checkpoints')
    .describe("Artifact store folder, relative to the config file's folder; `--store` overrides it."),
  engine: engineSchema.prefault({}),
  executor: executorName.default('local').describe('Default executor of every stage.'),
  slurm: slurmSchema.prefault({}),
  resources: z
    .strictObject({
      train: z.int().min(1).default(1).describe('At most this many `train` stages run at once.'),
    })
    .prefault({})
    .describe('Limits per resource class; `light` stages are limited only by --concurrency.'),
  stages: z
    .record(z.string().regex(STAGE_NAME, 'a letter or "_", then letters, digits, "_" or "-"'), stageConfigSchema)
    .refine((stages) => Object.keys(stages).length > 0, 'at least one stage')
    .describe('Stage name -> stage.'),
});

export type PipelineConfig = z.output<typeof pipelineConfigSchema>;
export type SlurmConfig = z.output<typeof slurmSchema>;
export type ExecutorName = z.output<typeof executorName>;
