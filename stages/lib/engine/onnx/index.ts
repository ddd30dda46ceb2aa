/**
 * The engine's ONNX path: export a decoder (export.ts) and run it with onnxruntime-node
 * (session.ts). `exportModel` reads a tfjs model's current weights, so a policy that was just
 * updated can be re-exported and reopened from memory without touching the disk.
 */
import type { Model } from '../model.ts';
import { loadModel } from '../checkpoint.ts';
import { disposeModel } from '../model.ts';
import { exportDecoder, writeExportedModel, type ExportedModel, type ExportOptions } from './export.ts';

export { exportDecoder, writeExportedModel, ONNX_DIR, ONNX_MODEL_FILE, ONNX_DATA_FILE, type ExportedModel, type ExportOptions, type WeightSource } from './export.ts';
export { loadOnnxRuntime, openOnnxDecoder, closeOnnxDecoder, generateOnnx, sequenceLogprobsOnnx, type OnnxDecoder, type OnnxSessionOptions } from './session.ts';

/** The ONNX decoder of a tfjs model's current weights. */
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

/** Writes `<dir>/onnx/model.onnx` for the HF checkpoint folder `dir`; returns its path. */
export function exportCheckpoint(dir: string, options: ExportOptions = {}): string {
  const model = loadModel(dir);
  try {
    return writeExportedModel(dir, exportModel(model, options));
  } finally {
    disposeModel(model);
  }
}
