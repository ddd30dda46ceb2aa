/**
 * Fused kernels on the tfjs wasm backend: RMSNorm, SwiGLU, RoPE and the loss head's token
 * log-probabilities, forward and backward, and AdamW over a whole parameter in one pass. A
 * training step of the tiny model made about 3,500 tfjs kernel calls, each paying tfjs' per-op
 * cost (an allocation, a dispatch, a pass over memory); each function here replaces a chain of
 * them with one call into kernels/assembly/index.ts (AssemblyScript, built by kernels/build.ts),
 * which reads and writes tfjs' own heap.
 *
 * The layers call `fusedKernels()` and take the unfused tfjs ops when it is false (other backends,
 * or no build), so both paths stay, and test/engine/fused.test.ts holds them to each other.
 */
import * as tf from '@tensorflow/tfjs-core';
import { buildKernels } from '../../kernels/build.ts';

/** The exports of kernels/assembly/index.ts; pointers are byte offsets into tfjs-wasm's heap. */
interface KernelExports {
  adamw(param: number, grad: number, m: number, v: number, outParam: number, outM: number, outV: number, n: number,
    lr: number, beta1: number, beta2: number, oneMinusB1: number, oneMinusB2: number, eps: number, correction1: number, correction2: number, keep: number, gradScale: number): void;
  sumOfSquares(x: number, n: number): number;
  rmsNorm(x: number, weight: number, y: number, rstd: number, rows: number, cols: number, eps: number): void;
  rmsNormGrad(dy: number, x: number, weight: number, rstd: number, dx: number, dw: number, rows: number, cols: number): void;
  swiglu(h: number, out: number, rows: number, inner: number): void;
  swigluGrad(dy: number, h: number, dh: number, rows: number, inner: number): void;
  tokenLogprobs(logits: number, targets: number, logp: number, lse: number, rows: number, vocab: number): void;
  tokenLogprobsGrad(dlogp: number, logits: number, targets: number, lse: number, dlogits: number, rows: number, vocab: number): void;
  rope(x: number, cos: number, sin: number, out: number, rows: number, heads: number, rotated: number, headDim: number, direction: number): void;
  attention(qkv: number, mask: number, out: number, lse: number, scratch: number, batch: number, steps: number, heads: number, kvHeads: number, headDim: number, scale: number): void;
  attentionScratch(steps: number, headDim: number): number;
  attentionGradScratch(steps: number, headDim: number): number;
  attentionGrad(dout: number, qkv: number, mask: number, out: number, lse: number, dqkv: number, scratch: number, batch: number, steps: number, heads: number, kvHeads: number, headDim: number, scale: number): void;
  ropeFolded(x: number, cos: number, sin: number, out: number, rows: number, heads: number, kvHeads: number, headDim: number): void;
  addRmsNorm(x: number, y: number, weight: number, sum: number, out: number, rstd: number, rows: number, cols: number, eps: number): void;
  matmulNT(a: number, b: number, out: number, rows: number, inner: number, cols: number, packed: number): void;
  matmulNN(a: number, b: number, out: number, rows: number, inner: number, cols: number, packed: number): void;
  matmulTN(a: number, b: number, out: number, n: number, p: number, q: number, packed: number): void;
  /** Rows of b per packed chunk of matmulTN: its scratch is TN_CHUNK * (q & ~7) floats. */
  TN_CHUNK: { value: number };
  decodeAttention(qkv: number, cos: number, sin: number, pastK: number, pastV: number, mask: number, keys: number, values: number, out: number, scratch: number, batch: number, heads: number, kvHeads: number, headDim: number, past: number): void;
}

/** The parts of tfjs-wasm's backend the kernels use (not in its public types). */
interface WasmBackend {
  /** The Emscripten module: the plain binary exports its memory (asm.memory); the threaded one imports it (wasmMemory). */
  wasm: { asm: { memory?: object }; wasmMemory?: object };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: object): boolean;
}

/** The global WebAssembly API (this project's TypeScript lib settings do not declare it). */
const webAssembly = (globalThis as unknown as { WebAssembly: { instantiate(bytes: Uint8Array, imports: object): Promise<{ instance: { exports: unknown } }> } }).WebAssembly;

let kernels: KernelExports | undefined;
let enabled = false;
/** On tfjs-wasm's threaded binary, whose XNNPACK splits matmuls across the threads. */
let threaded = false;

/** True when the fused kernels are loaded, switched on, and the wasm backend is running. */
export function fusedKernels(): boolean {
  return enabled && tf.getBackend() === 'wasm';
}

/**
 * True when a linear layer's products should be the fused kernels: not on the threaded binary,
 * where tfjs' matmul runs on every thread and the kernels (one thread) would be slower.
 */
export function fusedLinear(): boolean {
  return !threaded && fusedKernels();
}

/** Switches the fused kernels off (the unfused tfjs ops run) or back on; for tests and benchmarks. */
export function setFusedKernels(on: boolean): void {
  enabled = on && kernels !== undefined;
}

/**
 * Builds (first time only) and instantiates the kernels on the running wasm backend's memory and
 * registers them. Returns what to record: 'on', or why they are off (the engine then runs unfused).
 */
export async function loadFusedKernels(): Promise<string> {
  // The threaded binary's memory is shared; a module importing it must be built for shared memory.
  threaded = tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT') as boolean;
  const record = threaded ? 'on (threaded wasm: linear products on tfjs matmul, which uses every thread)' : 'on';
  if (kernels) return record;
  let binary: Uint8Array;
  try {
    binary = (await buildKernels(threaded ? 'shared' : 'unshared')).binary;
  } catch (error) {
    return `off (${(error as Error).message.split('\n')[0]})`;
  }
  const backend = tf.backend() as unknown as WasmBackend;
  const memory = backend.wasm.asm.memory ?? backend.wasm.wasmMemory;
  const { instance } = await webAssembly.instantiate(binary, { env: { memory } });
  kernels = instance.exports as unknown as KernelExports;
  registerKernels(kernels);
  enabled = true;
  return record;
}

const offsetOf = (backend: WasmBackend, t: tf.TensorInfo) => {
  const entry = backend.dataIdMap.get(t.dataId);
  if (!entry) throw new Error('Internal error: tensor is not on the wasm backend');
  return entry.memoryOffset;
};

function registerKernels(k: KernelExports): void {
  const register = (kernelName: string, kernelFunc: (inputs: Record<string, tf.TensorInfo>, attrs: Record<string, number>, backend: WasmBackend) => tf.TensorInfo | tf.TensorInfo[]) => {
    if (tf.getKernel(kernelName, 'wasm')) return;
    tf.registerKernel({
      kernelName,
      backendName: 'wasm',
      kernelFunc: ({ inputs, attrs, backend }) => kernelFunc(inputs as Record<string, tf.TensorInfo>, attrs as unknown as Record<string, number>, backend as unknown as WasmBackend),
    });
  };
  // Some kernels need a few floats of scratch per call: a tensor of the backend's, freed after.
  const withScratch = <T>(b: WasmBackend, floats: number, work: (scratch: number) => T): T => {
    const scratch = b.makeOutput([floats], 'float32');
    try {
      return work(offsetOf(b, scratch));
    } finally {
      b.disposeData(scratch.dataId);
    }
  };
  register('LoreRmsNorm', ({ x, weight }, { eps }, b) => {
    const [rows, cols] = x!.shape as [number, number];
    const y = b.makeOutput([rows, cols], 'float32');
    const rstd = b.makeOutput([rows], 'float32');
    k.rmsNorm(offsetOf(b, x!), weight ? offsetOf(b, weight) : 0, offsetOf(b, y), offsetOf(b, rstd), rows, cols, eps!);
    return [y, rstd];
  });
  register('LoreRmsNormGrad', ({ dy, x, weight, rstd }, _attrs, b) => {
    const [rows, cols] = x!.shape as [number, number];
    const dx = b.makeOutput([rows, cols], 'float32');
    const dw = b.makeOutput([cols], 'float32');
    k.rmsNormGrad(offsetOf(b, dy!), offsetOf(b, x!), offsetOf(b, weight!), offsetOf(b, rstd!), offsetOf(b, dx), offsetOf(b, dw), rows, cols);
    return [dx, dw];
  });
  register('LoreAddRmsNorm', ({ x, y, weight }, { eps }, b) => {
    const [rows, cols] = x!.shape as [number, number];
    const [sum, out] = [b.makeOutput([rows, cols], 'float32'), b.makeOutput([rows, cols], 'float32')];
    withScratch(b, rows, (rstd) => k.addRmsNorm(offsetOf(b, x!), offsetOf(b, y!), weight ? offsetOf(b, weight) : 0, offsetOf(b, sum), offsetOf(b, out), rstd, rows, cols, eps!));
    return [sum, out];
  });
  register('LoreSwiGlu', ({ h }, _attrs, b) => {
    const [rows, width] = h!.shape as [number, number];
    const out = b.makeOutput([rows, width / 2], 'float32');
    k.swiglu(offsetOf(b, h!), offsetOf(b, out), rows, width / 2);
    return out;
  });
  register('LoreSwiGluGrad', ({ dy, h }, _attrs, b) => {
    const [rows, width] = h!.shape as [number, number];
    const dh = b.makeOutput([rows, width], 'float32');
    k.swigluGrad(offsetOf(b, dy!), offsetOf(b, h!), offsetOf(b, dh), rows, width / 2);
    return dh;
  });
  register('LoreTokenLogprobs', ({ logits, targets }, _attrs, b) => {
    const [rows, vocab] = logits!.shape as [number, number];
    const logp = b.makeOutput([rows], 'float32');
    const lse = b.makeOutput([rows], 'float32');
    k.tokenLogprobs(offsetOf(b, logits!), offsetOf(b, targets!), offsetOf(b, logp), offsetOf(b, lse), rows, vocab);
    return [logp, lse];
  });
  register('LoreTokenLogprobsGrad', ({ dlogp, logits, targets, lse }, _attrs, b) => {
    const [rows, vocab] = logits!.shape as [number, number];
    const dlogits = b.makeOutput([rows, vocab], 'float32');
    k.tokenLogprobsGrad(offsetOf(b, dlogp!), offsetOf(b, logits!), offsetOf(b, targets!), offsetOf(b, lse!), offsetOf(b, dlogits), rows, vocab);
    return dlogits;
  });
  register('LoreRope', ({ x, cos, sin }, { direction, rotated }, b) => {
    const [batch, steps, heads, headDim] = x!.shape as [number, number, number, number];
    const out = b.makeOutput(x!.shape, 'float32');
    k.rope(offsetOf(b, x!), offsetOf(b, cos!), offsetOf(b, sin!), offsetOf(b, out), batch * steps, heads, rotated ?? heads, headDim, direction!);
    return out;
  });
  register('LoreRopeFolded', ({ x, cos, sin }, { heads, kvHeads, headDim }, b) => {
    const rows = x!.shape[0] as number;
    const out = b.makeOutput([rows, (heads! + 2 * kvHeads!) * headDim!], 'float32');
    k.ropeFolded(offsetOf(b, x!), offsetOf(b, cos!), offsetOf(b, sin!), offsetOf(b, out), rows, heads!, kvHeads!, headDim!);
    return out;
  });
  register('LoreAttention', ({ qkv, mask }, { heads, kvHeads, scale }, b) => {
    const [batch, steps] = mask!.shape as [number, number];
    const headDim = (qkv!.shape[1] as number) / (heads! + 2 * kvHeads!);
    const out = b.makeOutput([batch * steps, heads! * headDim], 'float32');
    const lse = b.makeOutput([batch, heads!, steps], 'float32');
    withScratch(b, k.attentionScratch(steps, headDim), (scratch) => k.attention(offsetOf(b, qkv!), offsetOf(b, mask!), offsetOf(b, out), offsetOf(b, lse), scratch, batch, steps, heads!, kvHeads!, headDim, scale!));
    return [out, lse];
  });
  register('LoreAttentionGrad', ({ dout, qkv, mask, out, lse }, { heads, kvHeads, scale }, b) => {
    const [batch, steps] = mask!.shape as [number, number];
    const headDim = (qkv!.shape[1] as number) / (heads! + 2 * kvHeads!);
    const dqkv = b.makeOutput(qkv!.shape, 'float32');
    withScratch(b, k.attentionGradScratch(steps, headDim), (scratch) =>
      k.attentionGrad(offsetOf(b, dout!), offsetOf(b, qkv!), offsetOf(b, mask!), offsetOf(b, out!), offsetOf(b, lse!), offsetOf(b, dqkv), scratch, batch, steps, heads!, kvHeads!, headDim, scale!));
    return dqkv;
  });
  // The right operand packed into panels of 8 columns (the last zero-padded): kernels/assembly/matmul.ts.
  const packedFloats = (inner: number, cols: number) => inner * Math.ceil(cols / 8) * 8;
  // x W^T (right operand (cols, inner)) and dy W (right operand (inner, cols)): the same packed product.
  const registerPackedProduct = (name: string, colsAxis: 0 | 1, kernel: KernelExports['matmulNT']) =>
    register(name, ({ a, b: right }, _attrs, b) => {
      const [rows, inner] = a!.shape as [number, number];
      const cols = right!.shape[colsAxis] as number;
      const out = b.makeOutput([rows, cols], 'float32');
      withScratch(b, packedFloats(inner, cols), (packed) => kernel(offsetOf(b, a!), offsetOf(b, right!), offsetOf(b, out), rows, inner, cols, packed));
      return out;
    });
  registerPackedProduct('LoreMatMulNT', 0, k.matmulNT);
  registerPackedProduct('LoreMatMulNN', 1, k.matmulNN);
  register('LoreMatMulTN', ({ a, b: right }, _attrs, b) => {
    const [n, p] = a!.shape as [number, number];
    const q = right!.shape[1] as number;
    const out = b.makeOutput([p, q], 'float32');
    withScratch(b, Math.max(1, k.TN_CHUNK.value * (q & ~7)), (packed) => k.matmulTN(offsetOf(b, a!), offsetOf(b, right!), offsetOf(b, out), n, p, q, packed));
    return out;
  });
  register('LoreDecodeAttention', ({ qkv, cos, sin, pastK, pastV, mask }, { heads, kvHeads }, b) => {
    const [batch, keyCount] = mask!.shape as [number, number];
    const headDim = (qkv!.shape[1] as number) / (2 * heads! + 3 * kvHeads!);
    const past = keyCount - 1;
    const keys = b.makeOutput([batch, kvHeads!, keyCount, headDim], 'float32');
    const values = b.makeOutput([batch, kvHeads!, keyCount, headDim], 'float32');
    const out = b.makeOutput([batch, heads! * headDim], 'float32');
    withScratch(b, headDim + keyCount, (scratch) =>
      k.decodeAttention(offsetOf(b, qkv!), offsetOf(b, cos!), offsetOf(b, sin!), past > 0 ? offsetOf(b, pastK!) : 0, past > 0 ? offsetOf(b, pastV!) : 0, offsetOf(b, mask!),
        offsetOf(b, keys), offsetOf(b, values), offsetOf(b, out), scratch, batch, heads!, kvHeads!, headDim, past));
    return [out, keys, values];
  });
  register('LoreAdamW', ({ param, grad, m, v }, a, b) => {
    const outs = [param, m, v].map((t) => b.makeOutput(t!.shape, 'float32'));
    const [outParam, outM, outV] = outs.map((t) => offsetOf(b, t)) as [number, number, number];
    k.adamw(offsetOf(b, param!), offsetOf(b, grad!), offsetOf(b, m!), offsetOf(b, v!), outParam, outM, outV, tf.util.sizeFromShape(param!.shape),
      a.lr!, a.beta1!, a.beta2!, 1 - a.beta1!, 1 - a.beta2!, a.eps!, a.correction1!, a.correction2!, 1 - a.decay!, a.gradScale!);
    return outs;
  });
}

const run = (name: string, inputs: tf.NamedTensorMap, attrs: Record<string, number> = {}) =>
  tf.engine().runKernel(name, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor | tf.Tensor[];

/** RMSNorm over the last axis, x (N, d); see layers.ts `rmsNorm` (which calls this when fused). */
export function fusedRmsNorm(x: tf.Tensor2D, weight: tf.Tensor1D | undefined, eps: number): tf.Tensor2D {
  if (!weight) {
    const [y, rstd] = run('LoreRmsNorm', { x }, { eps }) as [tf.Tensor2D, tf.Tensor1D];
    rstd.dispose();
    return y;
  }
  return rmsNormWithGrad(x, weight, eps);
}

/** x + y and RMSNorm of it (N, d), gradient-free (frozen weights): [sum, normed]. */
export function fusedAddRmsNorm(x: tf.Tensor2D, y: tf.Tensor2D, weight: tf.Tensor1D | undefined, eps: number): [tf.Tensor2D, tf.Tensor2D] {
  return run('LoreAddRmsNorm', weight ? { x, y, weight } : { x, y }, { eps }) as [tf.Tensor2D, tf.Tensor2D];
}

const rmsNormWithGrad = (x: tf.Tensor2D, weight: tf.Tensor1D, eps: number) =>
  (tf.customGrad(((xIn: tf.Tensor, wIn: tf.Tensor, save: tf.GradSaveFunc) => {
    const [y, rstd] = run('LoreRmsNorm', { x: xIn, weight: wIn }, { eps }) as [tf.Tensor, tf.Tensor];
    save([xIn, wIn, rstd]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sw, sr] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        return run('LoreRmsNormGrad', { dy, x: sx, weight: sw, rstd: sr }) as tf.Tensor[];
      },
    };
  }) as never) as unknown as (x: tf.Tensor2D, w: tf.Tensor1D) => tf.Tensor2D)(x, weight);

/**
 * silu(gate) * up for h (N, 2I) = [gate | up] -> (N, I). `withGradient: false` (frozen weights)
 * skips the custom-gradient wrapper, which costs about what the kernel does at a decoding step's size.
 */
export function fusedSwiGlu(h: tf.Tensor2D, withGradient = true): tf.Tensor2D {
  return withGradient ? swiGluWithGrad(h) : (run('LoreSwiGlu', { h }) as tf.Tensor2D);
}

const swiGluWithGrad = tf.customGrad(((h: tf.Tensor, save: tf.GradSaveFunc) => {
  save([h]);
  return {
    value: run('LoreSwiGlu', { h }) as tf.Tensor,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => run('LoreSwiGluGrad', { dy, h: saved[0] as tf.Tensor }) as tf.Tensor,
  };
}) as never) as unknown as (h: tf.Tensor2D) => tf.Tensor2D;

/** log p(target_n | row n) for logits (N, V), targets (N); see loss.ts `tokenLogprobs`. */
export function fusedTokenLogprobs(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Tensor1D {
  const ids = targets.dtype === 'int32' ? targets : tf.cast(targets, 'int32');
  // Inputs the gradient does not flow to are saved too: the forward pass's tidy would free them.
  return (tf.customGrad(((logitsIn: tf.Tensor, save: tf.GradSaveFunc) => {
    const [logp, lse] = run('LoreTokenLogprobs', { logits: logitsIn, targets: ids }) as [tf.Tensor, tf.Tensor];
    save([logitsIn, ids, lse]);
    return {
      value: logp,
      gradFunc: (dlogp: tf.Tensor, saved: tf.Tensor[]) => {
        const [sl, st, slse] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        return run('LoreTokenLogprobsGrad', { dlogp, logits: sl, targets: st, lse: slse }) as tf.Tensor;
      },
    };
  }) as never) as unknown as (l: tf.Tensor2D) => tf.Tensor1D)(logits);
}

/**
 * RoPE on x (B, T, heads, hd) with cos / sin (B, T, 1, hd); see layers.ts `applyRope`. Only the
 * first `rotated` heads rotate (default all); the others pass through (q|k|v in one tensor).
 */
export function fusedRope(x: tf.Tensor4D, cos: tf.Tensor4D, sin: tf.Tensor4D, rotated = x.shape[2]): tf.Tensor4D {
  return (tf.customGrad(((xIn: tf.Tensor, save: tf.GradSaveFunc) => {
    save([cos, sin]);
    return {
      value: run('LoreRope', { x: xIn, cos, sin }, { direction: 1, rotated }) as tf.Tensor,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => run('LoreRope', { x: dy, cos: saved[0] as tf.Tensor, sin: saved[1] as tf.Tensor }, { direction: -1, rotated }) as tf.Tensor,
    };
  }) as never) as unknown as (x: tf.Tensor4D) => tf.Tensor4D)(x);
}

/** a (N, K) @ b (M, K)^T -> (N, M) without transposing b: an HF linear's forward x W^T. */
export function fusedMatMulNT(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return run('LoreMatMulNT', { a, b }) as tf.Tensor2D;
}

/**
 * a (N, K) @ b (K, M) -> (N, M): an HF linear's input gradient dy W. The kernel packs b as the
 * others do and runs about 1.3x tfjs-wasm's MatMul (XNNPACK) on the tiny preset's shapes
 * (CPU time, same process, interleaved).
 */
export function fusedMatMulNN(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return run('LoreMatMulNN', { a, b }) as tf.Tensor2D;
}

/** a (N, P)^T @ b (N, Q) -> (P, Q) without transposing a: an HF linear's weight gradient dy^T x. */
export function fusedMatMulTN(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return run('LoreMatMulTN', { a, b }) as tf.Tensor2D;
}

/** Query and key/value head counts of grouped-query attention. */
export interface AttentionHeads {
  heads: number;
  kvHeads: number;
}

/**
 * Causal grouped-query self-attention in one kernel, forward and backward (kernels/assembly
 * `attention`): qkv (B*T, (H + 2Hkv) hd) with RoPE applied to q and k, keyMask (B, T) float 1 / 0
 * -> context (B*T, H hd). Replaces the unfused path's transposes, per-(batch, kv head) matmuls,
 * bias add and softmax (model.ts `attention`), and keeps no (T, T) probabilities for the backward
 * pass (only each query's log-sum-exp).
 */
export function fusedAttention(qkv: tf.Tensor2D, keyMask: tf.Tensor2D, { heads, kvHeads }: AttentionHeads, scale: number): tf.Tensor2D {
  const attrs = { heads, kvHeads, scale };
  return (tf.customGrad(((qkvIn: tf.Tensor, save: tf.GradSaveFunc) => {
    const [out, lse] = run('LoreAttention', { qkv: qkvIn, mask: keyMask }, attrs) as [tf.Tensor, tf.Tensor];
    save([qkvIn, keyMask, out, lse]);
    return {
      value: out,
      gradFunc: (dout: tf.Tensor, saved: tf.Tensor[]) => {
        const [sq, sm, so, sl] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
        return run('LoreAttentionGrad', { dout, qkv: sq, mask: sm, out: so, lse: sl }, attrs) as tf.Tensor;
      },
    };
  }) as never) as unknown as (q: tf.Tensor2D) => tf.Tensor2D)(qkv);
}

/**
 * Frozen weights' projection output (N, (2H + 3Hkv) hd) = [q | k | v | rotate_half(q|k)] ->
 * (N, (H + 2Hkv) hd) = [RoPE(q) | RoPE(k) | v], what `fusedAttention` takes; cos / sin (N, hd).
 * Gradient-free (frozen weights train nothing).
 */
export function fusedRopeFolded(qkv: tf.Tensor2D, cos: tf.Tensor, sin: tf.Tensor, { heads, kvHeads }: AttentionHeads, headDim: number): tf.Tensor2D {
  return run('LoreRopeFolded', { x: qkv, cos, sin }, { heads, kvHeads, headDim }) as tf.Tensor2D;
}

/**
 * One decoding step's attention from frozen weights (one new token per row): qkv (B, (2H + 3Hkv) hd)
 * as `fusedRopeFolded` takes it, cos / sin (B, hd) at the new positions, the cache's keys / values
 * (B, Hkv, past, hd) (absent when past is 0), keyMask (B, past + 1). Returns the context (B, H hd)
 * and the cache extended by this token. Gradient-free.
 */
export function fusedDecodeAttention(
  qkv: tf.Tensor2D, cos: tf.Tensor, sin: tf.Tensor, past: { k: tf.Tensor4D; v: tf.Tensor4D } | undefined, keyMask: tf.Tensor2D, heads: AttentionHeads,
): { out: tf.Tensor2D; k: tf.Tensor4D; v: tf.Tensor4D } {
  const inputs: tf.NamedTensorMap = { qkv, cos, sin, mask: keyMask };
  if (past) Object.assign(inputs, { pastK: past.k, pastV: past.v });
  const [out, k, v] = run('LoreDecodeAttention', inputs, { ...heads }) as [tf.Tensor2D, tf.Tensor4D, tf.Tensor4D];
  return { out, k, v };
}

/** sum over tensors of sum(t^2), in float64, without a tfjs op per tensor. */
export function fusedSumOfSquares(tensors: Iterable<tf.Tensor>): number {
  const backend = tf.backend() as unknown as WasmBackend;
  let total = 0;
  for (const t of tensors) total += (kernels as KernelExports).sumOfSquares(offsetOf(backend, t), t.size);
  return total;
}

export interface AdamWStep {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  correction1: number;
  correction2: number;
  /** lr * weight_decay for decayed parameters, 0 for the others. */
  decay: number;
  /** Multiplies the gradient first (the clipping coefficient). */
  gradScale: number;
}

/** One AdamW update of one parameter: [param', m', v']. */
export function fusedAdamW(param: tf.Tensor, grad: tf.Tensor, m: tf.Tensor, v: tf.Tensor, step: AdamWStep): [tf.Tensor, tf.Tensor, tf.Tensor] {
  return run('LoreAdamW', { param, grad, m, v }, { ...step }) as [tf.Tensor, tf.Tensor, tf.Tensor];
}
