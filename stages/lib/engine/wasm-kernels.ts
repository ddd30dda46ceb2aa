/**
 * Kernels the tfjs wasm backend does not ship but training needs (FACTS.md), and faster versions of
 * two it ships badly.
 *
 * `UnsortedSegmentSum` is what the gradient of `tf.gather` (the embedding lookup) calls. Written
 * here because no published package provides it for wasm; a JS loop over the rows is enough: it
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
