/**
 * One inference path for a model, whichever runtime runs it: generation and teacher-forced
 * log-probs on onnxruntime-node (an ONNX export of the model, onnx/) or on tfjs (the model itself).
 * `auto` takes onnxruntime when it loads here and tfjs otherwise; the choice is logged and goes into
 * `record` (the stage's manifest). Training keeps using the tfjs model; after an optimizer step,
 * `refresh` re-exports it so generation sees the new weights.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EngineLogger as Logger } from '../host.ts';
import { generate, type GenerateOptions, type Generation } from './generate.ts';
import { sequenceLogprobs, type PromptCompletion } from '../model/logprobs.ts';
import type { Model } from '../model/model.ts';
import { closeOnnxDecoder, exportModelAsync, generateOnnx, loadOnnxRuntime, openOnnxDecoder, sequenceLogprobsOnnx, writeExportedModel, type OnnxDecoder } from '../onnx/index.ts';

export type InferenceChoice = 'auto' | 'onnxruntime' | 'tfjs';

export interface Inference {
  readonly name: 'onnxruntime' | 'tfjs';
  /** What ran, for the manifest's engine record: `inference`, and onnxruntime's version and threads. */
  readonly record: Record<string, string>;
  generate(prompts: number[][], options: GenerateOptions): Promise<Generation[]>;
  /** log p(completion token j | prompt, earlier tokens), one entry per completion token of each row. */
  sequenceLogprobs(batch: readonly PromptCompletion[]): Promise<number[][]>;
  /** Call after the model's weights changed; returns the seconds it took (re-export and new session, or 0). */
  refresh(): Promise<number>;
  close(): Promise<void>;
}

export interface InferenceOptions {
  inference: InferenceChoice;
  /** onnxruntime's intra-op threads: the cores this stage may use. */
  threads: number;
  /** An exported `onnx/model.onnx` of exactly this model's weights; exported in memory when absent. */
  onnxFile?: string;
  log?: Logger;
}

export async function openInference(model: Model, options: InferenceOptions): Promise<Inference> {
  if (options.inference === 'tfjs') return tfjsInference(model, options.log, 'tfjs');
  const loaded = await loadOnnxRuntime();
  if ('error' in loaded) {
    if (options.inference === 'onnxruntime') throw new Error(`engine.inference is onnxruntime, but onnxruntime-node does not load: ${loaded.error}`);
    return tfjsInference(model, options.log, `tfjs (auto: onnxruntime-node does not load: ${loaded.error})`);
  }
  const started = performance.now();
  const fromFile = options.onnxFile !== undefined && existsSync(options.onnxFile);
  let decoder = fromFile ? await openOnnxDecoder(options.onnxFile as string, model.config, { threads: options.threads }) : await openExported(model, options.threads);
  const seconds = (performance.now() - started) / 1000;
  options.log?.info(
    `inference: onnxruntime ${loaded.version}${options.inference === 'auto' ? ' (auto)' : ''}, ${options.threads} threads, ` +
      `${fromFile ? `session from ${options.onnxFile}` : 'exported in memory'} in ${seconds.toFixed(2)} s`,
  );
  return {
    name: 'onnxruntime',
    record: { inference: 'onnxruntime', onnxruntime: loaded.version, inference_threads: String(options.threads) },
    generate: (prompts, generateOptions) => generateOnnx(decoder, prompts, generateOptions),
    sequenceLogprobs: (batch) => sequenceLogprobsOnnx(decoder, batch),
    async refresh() {
      const start = performance.now();
      const next: OnnxDecoder = await openExported(model, options.threads);
      await closeExported(decoder);
      decoder = next;
      return (performance.now() - start) / 1000;
    },
    close: () => closeExported(decoder),
  };
}

/** Folders holding exports too large for one protobuf, by the decoder opened from them. */
const exportFolders = new WeakMap<OnnxDecoder, string>();

/**
 * A session on the model's current weights, exported in memory; weights past the protobuf's 2 GiB
 * (a 0.5B model in float32) live in `model.onnx_data`, which onnxruntime-node reads only from a
 * file beside the model, so such an export goes through a temporary folder, removed on close.
 */
async function openExported(model: Model, threads: number): Promise<OnnxDecoder> {
  const exported = await exportModelAsync(model);
  if (!exported.external) return openOnnxDecoder(exported.model, model.config, { threads });
  const folder = mkdtempSync(join(tmpdir(), 'lore-onnx-'));
  try {
    const decoder = await openOnnxDecoder(writeExportedModel(folder, exported), model.config, { threads });
    exportFolders.set(decoder, folder);
    return decoder;
  } catch (error) {
    rmSync(folder, { recursive: true, force: true });
    throw error;
  }
}

async function closeExported(decoder: OnnxDecoder): Promise<void> {
  await closeOnnxDecoder(decoder);
  const folder = exportFolders.get(decoder);
  if (folder) rmSync(folder, { recursive: true, force: true });
}

function tfjsInference(model: Model, log: Logger | undefined, why: string): Inference {
  log?.info(`inference: ${why}`);
  return {
    name: 'tfjs',
    record: { inference: 'tfjs' },
    generate: (prompts, options) => generate(model, prompts, options),
    async sequenceLogprobs(batch) {
      if (batch.length === 0) return [];
      // An async read: webgpu has no synchronous one.
      const { logprobs, mask } = sequenceLogprobs(model, [...batch], { frozen: true });
      mask.dispose();
      const rows = (await logprobs.array()) as number[][];
      logprobs.dispose();
      return rows.map((row, b) => row.slice(0, batch[b]!.completion.length));
    },
    // Frozen weights follow the variables by themselves (model.ts frozenWeights).
    refresh: async () => 0,
    close: async () => {},
  };
}
