/**
 * Kernels the tfjs wasm backend does not ship but training needs (package README, "What tfjs-wasm
 * needed"), and faster versions of
 * two it ships badly.
 *
 * `UnsortedSegmentSum` is what the gradient of `tf.gather` (the embedding lookup) calls. Written
 * here because no published package provides it for wasm; a JS loop over heap views is enough: it
 * runs once per step on [tokens, hidden] values, a tiny cost next to the matmuls.
 */
import * as tf from '@tensorflow/tfjs-core';

interface WasmBackendLike {
  readSync(dataId: object): tf.backend_util.BackendValues;
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number, values?: tf.backend_util.BackendValues): tf.TensorInfo;
  /** A view into wasm memory (no copy); invalidated when memory grows, so take it after makeOutput. */
  typedArrayFromHeap(info: tf.TensorInfo): tf.TypedArray;
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
      const rowSize = tf.util.sizeFromShape(x.shape.slice(1));
      const out = wasm.makeOutput([numSegments, ...x.shape.slice(1)], x.dtype);
      const target = wasm.typedArrayFromHeap(out);
      target.fill(0); // fresh wasm memory is not zeroed
      const values = wasm.typedArrayFromHeap(x);
      const ids = wasm.typedArrayFromHeap(segmentIds);
      for (let row = 0; row < ids.length; row++) {
        const segment = ids[row] as number;
        // TensorFlow drops rows whose segment id is out of range; so do we.
        if (segment < 0 || segment >= numSegments) continue;
        const from = row * rowSize;
        const to = segment * rowSize;
        for (let j = 0; j < rowSize; j++) target[to + j] = (target[to + j] as number) + (values[from + j] as number);
      }
      return out;
    },
  });
  replaceContiguousCopies();
}

/**
 * tfjs-wasm 4.22's Slice, Unpack and SplitV start with `readSync`, which copies the WHOLE input out
 * of wasm memory, so unstacking n heads copies the tensor n times (it was 18% of a training step).
 * Here they copy straight between heap views (Slice: contiguous cases; Unpack: axis 0; SplitV: any
 * axis); anything else goes to the original kernel. Identity shares its input's buffer.
 */
function replaceContiguousCopies(): void {
  replaceKernel('Slice', (args, original) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { begin, size } = args.attrs as { begin: number | number[]; size: number | number[] };
    const [begin_, size_] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size) as [number[], number[]];
    if (x.dtype === 'string' || !tf.slice_util.isSliceContinous(x.shape, begin_, size_)) return original(args);
    const wasm = args.backend as unknown as WasmBackendLike;
    const out = wasm.makeOutput(size_, x.dtype);
    const offset = tf.slice_util.computeFlatOffset(begin_, tf.util.computeStrides(x.shape));
    const count = tf.util.sizeFromShape(size_);
    wasm.typedArrayFromHeap(out).set(wasm.typedArrayFromHeap(x).subarray(offset, offset + count));
    return out;
  });
  replaceKernel('Unpack', (args, original) => {
    const { value } = args.inputs as { value: tf.TensorInfo };
    const axis = (args.attrs as { axis: number }).axis;
    if (value.dtype === 'string' || (axis !== 0 && axis !== -value.shape.length)) return original(args);
    const wasm = args.backend as unknown as WasmBackendLike;
    const pieceShape = value.shape.slice(1);
    const pieceSize = tf.util.sizeFromShape(pieceShape);
    const outs = Array.from({ length: value.shape[0] as number }, () => wasm.makeOutput(pieceShape, value.dtype));
    const source = wasm.typedArrayFromHeap(value);
    outs.forEach((out, i) => wasm.typedArrayFromHeap(out).set(source.subarray(i * pieceSize, (i + 1) * pieceSize)));
    return outs;
  });
  // Identity: the tape clones every tensor a gradient will need, and wasm's Identity copies the
  // bytes (5% of a training step). Tensors are immutable, so share the buffer by reference count,
  // as the cpu backend's Identity and wasm's own Reshape do.
  replaceKernel('Identity', (args, original) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype === 'string') return original(args);
    (args.backend as unknown as { incRef(dataId: object): void }).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  });
  // GatherV2 (the embedding lookup, RoPE tables) ran its C++ loop at about 140 ns per element
  // (18 ms for 1024 x 128); whole rows are contiguous, so copy them as subarrays.
  replaceKernel('GatherV2', (args, original) => {
    const { x, indices } = args.inputs as { x: tf.TensorInfo; indices: tf.TensorInfo };
    const { axis, batchDims } = args.attrs as { axis: number; batchDims: number };
    if (x.dtype === 'string' || batchDims !== 0) return original(args);
    const at = tf.util.parseAxisParam(axis, x.shape)[0] as number;
    const dim = x.shape[at] as number;
    const outer = tf.util.sizeFromShape(x.shape.slice(0, at));
    const inner = tf.util.sizeFromShape(x.shape.slice(at + 1));
    const wasm = args.backend as unknown as WasmBackendLike;
    const out = wasm.makeOutput([...x.shape.slice(0, at), ...indices.shape, ...x.shape.slice(at + 1)], x.dtype);
    const ids = wasm.typedArrayFromHeap(indices);
    const source = wasm.typedArrayFromHeap(x);
    const target = wasm.typedArrayFromHeap(out);
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < ids.length; i++) {
        const index = ids[i] as number;
        if (!(index >= 0 && index < dim)) throw new Error(`GatherV2: the index value ${index} is not in [0, ${dim - 1}]`);
        const from = (o * dim + index) * inner;
        target.set(source.subarray(from, from + inner), (o * ids.length + i) * inner);
      }
    }
    return out;
  });
  // SplitV (fused q|k|v and gate|up outputs are split every layer) calls the same whole-copy Slice
  // once per piece; copy each piece's rows straight from the heap instead, on any axis.
  replaceKernel('SplitV', (args, original) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype === 'string') return original(args);
    const { numOrSizeSplits, axis } = args.attrs as { numOrSizeSplits: number | number[]; axis: number };
    const at = tf.util.parseAxisParam(axis, x.shape)[0] as number;
    const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, at);
    const outer = tf.util.sizeFromShape(x.shape.slice(0, at));
    const inner = tf.util.sizeFromShape(x.shape.slice(at + 1));
    const rowLength = (x.shape[at] as number) * inner;
    const wasm = args.backend as unknown as WasmBackendLike;
    const outs = sizes.map((size) => wasm.makeOutput(x.shape.map((d, i) => (i === at ? size : d)), x.dtype));
    const source = wasm.typedArrayFromHeap(x);
    let offset = 0;
    outs.forEach((out, i) => {
      const block = (sizes[i] as number) * inner;
      const target = wasm.typedArrayFromHeap(out);
      for (let row = 0; row < outer; row++) target.set(source.subarray(row * rowLength + offset, row * rowLength + offset + block), row * block);
      offset += block;
    });
    return outs;
  });
}

/** Swaps a wasm kernel for `kernel`, which may hand the cases it does not cover to the original. */
function replaceKernel(name: string, kernel: (args: Parameters<tf.KernelFunc>[0], original: tf.KernelFunc) => ReturnType<tf.KernelFunc>): void {
  const existing = tf.getKernel(name, 'wasm');
  if (!existing) throw new Error(`Internal error: wasm backend has no ${name} kernel`);
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: (args) => kernel(args, existing.kernelFunc) });
}

/**
 * Copies `t`'s float32 values into `target` at `offset`. On wasm straight from the heap: `data()`
 * would first copy them into a fresh ArrayBuffer, and a data-parallel step moving every parameter
 * and gradient that way allocated megabytes per step, whose external-memory pressure made V8 run
 * extra mark-compact collections in every rank.
 */
export function copyValuesInto(t: tf.Tensor, target: Float32Array, offset: number): void {
  if (t.dtype !== 'float32') throw new Error(`copyValuesInto: expected float32, got ${t.dtype}`);
  const backend = tf.backend();
  if (tf.getBackend() === 'wasm') target.set((backend as unknown as WasmBackendLike).typedArrayFromHeap(t), offset);
  else target.set(t.dataSync() as Float32Array, offset);
}

/**
 * A float32 tensor holding a copy of `values` (which may be a view of a SharedArrayBuffer that is
 * rewritten later). wasm copies the values into its heap when the tensor is made; other backends
 * may keep the array itself, so they get a copy of it.
 */
export function tensorFromValues(values: Float32Array, shape: number[]): tf.Tensor {
  return tf.tensor(tf.getBackend() === 'wasm' ? values : values.slice(), shape, 'float32');
}
