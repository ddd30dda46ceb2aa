/**
 * The engine's ONNX path: export a decoder (export.ts) and run it with onnxruntime-node
 * (session.ts). `exportModel` reads a tfjs model's current weights, so a policy that was just
 * updated can be re-exported and reopened from memory without touching the disk.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Model } from '../model/model.ts';
import { loadModel } from '../io/checkpoint.ts';
import { disposeModel } from '../model/model.ts';
import { exportDecoder, writeExportedModel, type ExportedModel, type ExportOptions } from './export.ts';

export { exportDecoder, writeExportedModel, ONNX_DIR, ONNX_MODEL_FILE, ONNX_DATA_FILE, type ExportedModel, type ExportOptions, type WeightSource } from './export.ts';
export { loadOnnxRuntime, openOnnxDecoder, closeOnnxDecoder, generateOnnx, sequenceLogprobsOnnx, type OnnxDecoder, type OnnxSessionOptions } from './session.ts';

/**
 * The ONNX decoder of a tfjs model's current weights, read synchronously (wasm, cpu). Backends
 * without synchronous reads (webgpu) need `exportModelAsync`.
 */
export function exportModel(model: Model, options: ExportOptions = {}): ExportedModel {
  return exportDecoder(
    model.config,
    (name) => {
      const variable = model.params.get(name);
      if (!variable) throw new Error(`Internal error: model has no parameter ${name}`);
      return variable.dataSync() as Float32Array;
    },
    options,
  );
}

/**
 * `exportModel` on any backend: reads go through `data()`, which webgpu answers (its `dataSync`
 * fails under Node). On backends with synchronous reads it reads lazily as `exportModel` does, so
 * a 0.5B model's 2 GB are not held twice.
 */
export async function exportModelAsync(model: Model, options: ExportOptions = {}): Promise<ExportedModel> {
  if (tf.getBackend() !== 'webgpu') return exportModel(model, options);
  const values = new Map<string, Float32Array>();
  for (const [name, variable] of model.params) values.set(name, (await variable.data()) as Float32Array);
  return exportDecoder(
    model.config,
    (name) => {
      const found = values.get(name);
      if (!found) throw new Error(`Internal error: model has no parameter ${name}`);
      return found;
    },
    options,
  );
}

/** Writes `<dir>/onnx/model.onnx` for the HF checkpoint folder `dir`; returns its path. */
export async function exportCheckpoint(dir: string, options: ExportOptions = {}): Promise<string> {
  const model = loadModel(dir);
  try {
    return writeExportedModel(dir, await exportModelAsync(model, options));
  } finally {
    disposeModel(model);
  }
}
