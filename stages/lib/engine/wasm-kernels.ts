/**
 * Kernels the tfjs wasm backend does not ship but training needs (FACTS.md).
 *
 * `UnsortedSegmentSum` is what the gradient of `tf.gather` (the embedding lookup) calls. Written
 * here because no published package provides it for wasm; a JS loop over the rows is enough: it
 * runs once per step on [tokens, hidden] values, a tiny cost next to the matmuls.
 */
import * as tf from '@tensorflow/tfjs-core';

interface WasmBackendLike {
  readSync(dataId: object): tf.backend_util.BackendValues;
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number, values?: tf.backend_util.BackendValues): tf.TensorInfo;
}

let registered = false;

export function registerWasmKernels(): void {
  if (registered || tf.getKernel('UnsortedSegmentSum', 'wasm') !== undefined) return;
  registered = true;
  tf.registerKernel({
    kernelName: 'UnsortedSegmentSum',
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
      const numSegments = (attrs as { numSegments: number }).numSegments;
      const wasm = backend as unknown as WasmBackendLike;
      const values = wasm.readSync(x.dataId) as Float32Array | Int32Array;
      const ids = wasm.readSync(segmentIds.dataId) as Int32Array | Float32Array;
      const rowSize = x.shape.slice(1).reduce((a, b) => a * b, 1);
      const out = x.dtype === 'int32' ? new Int32Array(numSegments * rowSize) : new Float32Array(numSegments * rowSize);
      for (let row = 0; row < ids.length; row++) {
        const segment = ids[row] as number;
        // TensorFlow drops rows whose segment id is out of range; so do we.
        if (segment < 0 || segment >= numSegments) continue;
        const from = row * rowSize;
        const to = segment * rowSize;
        for (let j = 0; j < rowSize; j++) out[to + j] = (out[to + j] as number) + (values[from + j] as number);
      }
      return wasm.makeOutput([numSegments, ...x.shape.slice(1)], x.dtype, undefined, out);
    },
  });
}
