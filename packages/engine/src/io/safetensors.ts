/**
 * safetensors (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length, a
 * JSON header {name: {dtype, shape, data_offsets}}, then raw little-endian data. Written here
 * because no npm package reads it for Node; the format is this small.
 * Reads F32, F16 and BF16 (into float32) and I32/I64 (into int32); writes F32, BF16 or F16.
 * Files are read and written a tensor at a time through a file descriptor, never whole: a 0.5B
 * model's weights are 2 GB in float32, which is past what one Node Buffer read may hold (2 GiB),
 * and a second whole copy beside the tensors would double the peak memory.
 */
import { closeSync, existsSync, fstatSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { readWeightMap, WEIGHTS_FILE, WEIGHTS_INDEX_FILE } from './weight-files.ts';

export { modelWeightFiles, WEIGHTS_FILE, WEIGHTS_INDEX_FILE } from './weight-files.ts';

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** The dtypes written: HF's names in config.json's `torch_dtype` beside safetensors' own. */
export const STORED_DTYPES = { float32: 'F32', bfloat16: 'BF16', float16: 'F16' } as const;
export type StoredDtype = keyof typeof STORED_DTYPES;

const WIDTH: Record<string, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8 };

/** The header of one .safetensors file: tensor name -> dtype, shape, byte range after the header. */
export function readSafetensorsHeader(path: string): { entries: Map<string, HeaderEntry>; dataStart: number; fileSize: number } {
  const fd = openSync(path, 'r');
  try {
    return headerOf(fd, path);
  } finally {
    closeSync(fd);
  }
}

function headerOf(fd: number, path: string): { entries: Map<string, HeaderEntry>; dataStart: number; fileSize: number } {
  const fileSize = fstatSync(fd).size;
  if (fileSize < 8) throw new Error(`${path}: not a safetensors file (${fileSize} bytes)`);
  const lengthBytes = Buffer.alloc(8);
  readSync(fd, lengthBytes, 0, 8, 0);
  const headerLength = Number(lengthBytes.readBigUInt64LE(0));
  if (8 + headerLength > fileSize) throw new Error(`${path}: header length ${headerLength} runs past the end of the file`);
  const headerBytes = Buffer.alloc(headerLength);
  readSync(fd, headerBytes, 0, headerLength, 8);
  let header: Record<string, HeaderEntry | Record<string, string>>;
  try {
    header = JSON.parse(headerBytes.toString('utf8'));
  } catch (error) {
    throw new Error(`${path}: unreadable header JSON: ${(error as Error).message}`);
  }
  const dataStart = 8 + headerLength;
  const entries = new Map<string, HeaderEntry>();
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const entry = raw as HeaderEntry;
    const [begin, end] = entry.data_offsets;
    const count = entry.shape.reduce((a, b) => a * b, 1);
    const width = WIDTH[entry.dtype];
    if (width === undefined) throw new Error(`${path}: tensor ${name}: dtype ${entry.dtype} is not supported (F32, F16, BF16, I32, I64)`);
    if (end - begin !== count * width || dataStart + end > fileSize) {
      throw new Error(`${path}: tensor ${name}: data_offsets [${begin}, ${end}] do not hold ${count} ${entry.dtype} values`);
    }
    entries.set(name, entry);
  }
  return { entries, dataStart, fileSize };
}

/** Reads every tensor of one .safetensors file. Errors name the file and the tensor. */
export function readSafetensors(path: string): Map<string, tf.Tensor> {
  const fd = openSync(path, 'r');
  const tensors = new Map<string, tf.Tensor>();
  try {
    const { entries, dataStart } = headerOf(fd, path);
    for (const [name, entry] of entries) {
      const [begin, end] = entry.data_offsets;
      // A fresh (aligned) array per tensor: offsets in the file need not be aligned for a typed view.
      const data = new Uint8Array(end - begin);
      readFully(fd, data, dataStart + begin, path);
      tensors.set(name, placed(path, name, () => decode(entry.dtype, data.buffer, entry.shape.reduce((a, b) => a * b, 1), entry.shape)));
    }
  } catch (error) {
    tf.dispose([...tensors.values()]);
    throw error;
  } finally {
    closeSync(fd);
  }
  return tensors;
}

/**
 * Runs `make` (which hands a tensor's values to the backend), turning the backend's failure to
 * place them into an error that names the file, the tensor and what was held. tfjs-wasm's write
 * copies into its heap (at most 4 GiB) at the offset its malloc returned; when the heap cannot grow,
 * malloc returns 0 and the copy fails with a bare "RangeError: offset is out of bounds".
 */
function placed(path: string, name: string, make: () => tf.Tensor): tf.Tensor {
  try {
    return make();
  } catch (error) {
    // RangeError from the copy; WebAssembly's RuntimeError ("memory access out of bounds") when the
    // heap is full up to its 4 GiB.
    const failure = error as Error;
    if (!(failure instanceof RangeError) && failure.name !== 'RuntimeError') throw failure;
    const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
    throw new Error(
      `${path}: tensor ${name} could not be placed in the ${tf.getBackend()} backend's memory with ${mib(tf.memory().numBytes)} of tensors already held ` +
        `(${failure.message}; tfjs-wasm's heap holds at most 4 GiB, and it can fail to grow when the machine is short of memory)`,
    );
  }
}

/** readSync returns at most 2 GiB per call: loop until the range is read. */
function readFully(fd: number, into: Uint8Array, position: number, path: string): void {
  let done = 0;
  while (done < into.length) {
    const n = readSync(fd, into, done, Math.min(into.length - done, 1 << 30), position + done);
    if (n === 0) throw new Error(`${path}: file ended while reading at byte ${position + done}`);
    done += n;
  }
}

function decode(dtype: string, data: ArrayBuffer, count: number, shape: number[]): tf.Tensor {
  switch (dtype) {
    case 'F32':
      return tf.tensor(new Float32Array(data), shape, 'float32');
    case 'BF16': {
      // bfloat16 is the top half of a float32.
      const halves = new Uint16Array(data);
      const words = new Uint32Array(count);
      for (let i = 0; i < count; i++) words[i] = (halves[i] as number) << 16;
      return tf.tensor(new Float32Array(words.buffer), shape, 'float32');
    }
    case 'F16': {
      const halves = new Uint16Array(data);
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = halfToFloat(halves[i] as number);
      return tf.tensor(out, shape, 'float32');
    }
    case 'I32':
      return tf.tensor(new Int32Array(data), shape, 'int32');
    default: {
      const longs = new BigInt64Array(data);
      return tf.tensor(Int32Array.from(longs, (v) => Number(v)), shape, 'int32');
    }
  }
}

/** IEEE 754 binary16 -> number. */
export function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24; // subnormal
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/**
 * float32 -> bfloat16 bits, rounding to nearest even as PyTorch's `.to(torch.bfloat16)` does
 * (c10/util/BFloat16.h round_to_nearest_even); NaN stays a quiet NaN.
 */
export function floatToBfloat16(values: Float32Array): Uint16Array {
  const words = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const w = words[i] as number;
    if ((w & 0x7fffffff) > 0x7f800000) out[i] = 0x7fc0;
    else out[i] = ((w + 0x7fff + ((w >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

/** number -> IEEE 754 binary16 bits, round to nearest even (overflow to infinity, underflow to subnormals). */
export function floatToHalf(value: number): number {
  const f32 = new Float32Array([value]);
  const w = new Uint32Array(f32.buffer)[0] as number;
  const sign = (w >>> 16) & 0x8000;
  const exponent = (w >>> 23) & 0xff;
  const mantissa = w & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal: a multiple of 2^-24, rounded half to even (the scaled value is exact in a double).
    const scaled = Math.abs(f32[0] as number) * 2 ** 24;
    let rounded = Math.round(scaled);
    if (scaled - Math.floor(scaled) === 0.5 && rounded % 2 === 1) rounded -= 1;
    return sign | rounded; // 1024 rounds up into the smallest normal, which is its right encoding
  }
  const half = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  const roundUp = rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1);
  return sign | (half + (roundUp ? 1 : 0)); // a carry into the exponent is the right result (up to infinity)
}

/**
 * What the writers take: a tf.Tensor, or values made on demand (a fixture writing a model larger
 * than the memory it should need makes each tensor's values only when its turn comes).
 */
export interface TensorValues {
  shape: number[];
  size: number;
  data(): Promise<Float32Array | Int32Array | Uint8Array>;
}

/** A tensor's values as the bytes of `dtype`. */
async function encodeTensor(tensor: TensorValues, dtype: StoredDtype): Promise<Uint8Array> {
  const raw = await tensor.data();
  const values = raw instanceof Float32Array ? raw : Float32Array.from(raw);
  if (dtype === 'float32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const halves = dtype === 'bfloat16' ? floatToBfloat16(values) : Uint16Array.from(values, floatToHalf);
  return new Uint8Array(halves.buffer);
}

const bytesEach = (dtype: StoredDtype) => (dtype === 'float32' ? 4 : 2);

/**
 * Writes tensors in the given order as `dtype` (default float32). `metadata.format = "pt"` is what
 * transformers checks before loading; the header is space-padded to a multiple of 8 bytes, as the
 * reference writer does.
 */
export async function writeSafetensors(
  path: string,
  tensors: Map<string, TensorValues>,
  metadata: Record<string, string> = {},
  dtype: StoredDtype = 'float32',
): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', ...metadata } };
  let offset = 0;
  for (const [name, tensor] of tensors) {
    const size = tensor.size * bytesEach(dtype);
    header[name] = { dtype: STORED_DTYPES[dtype], shape: tensor.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, length);
    writeSync(fd, Buffer.from(json, 'utf8'));
    for (const tensor of tensors.values()) {
      const bytes = await encodeTensor(tensor, dtype);
      let done = 0;
      while (done < bytes.length) done += writeSync(fd, bytes, done, Math.min(bytes.length - done, 1 << 30));
    }
  } finally {
    closeSync(fd);
  }
}

/** transformers' `save_pretrained` default `max_shard_size="5GB"` (decimal gigabytes). */
export const DEFAULT_MAX_SHARD_BYTES = 5e9;

export interface WriteWeightsOptions {
  dtype?: StoredDtype;
  /** Bytes per shard before a new one starts; one tensor larger than this gets a shard of its own. */
  maxShardBytes?: number;
}

/**
 * Writes a model folder's weights as HF's `save_pretrained` lays them out: one `model.safetensors`
 * when they fit in `maxShardBytes`, else `model-00001-of-0000N.safetensors` shards filled in order
 * plus `model.safetensors.index.json` ({metadata: {total_size}, weight_map: {tensor: shard}}).
 * Returns the files written.
 */
export async function writeModelWeights(dir: string, tensors: Map<string, TensorValues>, options: WriteWeightsOptions = {}): Promise<string[]> {
  const dtype = options.dtype ?? 'float32';
  const limit = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  const shards: Array<Map<string, TensorValues>> = [];
  let current = new Map<string, TensorValues>();
  let currentBytes = 0;
  let totalBytes = 0;
  for (const [name, tensor] of tensors) {
    const size = tensor.size * bytesEach(dtype);
    if (current.size > 0 && currentBytes + size > limit) {
      shards.push(current);
      current = new Map();
      currentBytes = 0;
    }
    current.set(name, tensor);
    currentBytes += size;
    totalBytes += size;
  }
  if (current.size > 0) shards.push(current);
  if (shards.length <= 1) {
    await writeSafetensors(join(dir, WEIGHTS_FILE), current, {}, dtype);
    return [WEIGHTS_FILE];
  }
  const pad = (n: number) => String(n).padStart(5, '0');
  const files = shards.map((_, i) => `model-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`);
  const weightMap: Record<string, string> = {};
  for (const [i, shard] of shards.entries()) {
    await writeSafetensors(join(dir, files[i] as string), shard, {}, dtype);
    for (const name of shard.keys()) weightMap[name] = files[i] as string;
  }
  writeFileSync(join(dir, WEIGHTS_INDEX_FILE), `${JSON.stringify({ metadata: { total_size: totalBytes }, weight_map: weightMap }, null, 2)}\n`);
  return [...files, WEIGHTS_INDEX_FILE];
}

/**
 * Reads a model folder's weights: `model.safetensors`, or the shards named by
 * `model.safetensors.index.json` (HF sharded layout).
 */
export function readModelWeights(dir: string): Map<string, tf.Tensor> {
  const single = join(dir, WEIGHTS_FILE);
  const indexPath = join(dir, WEIGHTS_INDEX_FILE);
  if (existsSync(single)) return readSafetensors(single);
  if (!existsSync(indexPath)) throw new Error(`${dir}: no ${WEIGHTS_FILE} or ${WEIGHTS_INDEX_FILE}`);
  const byShard = readWeightMap(indexPath);
  const weights = new Map<string, tf.Tensor>();
  try {
    for (const [shard, names] of Object.entries(byShard)) {
      const shardPath = join(dir, shard);
      if (!existsSync(shardPath)) throw new Error(`${indexPath}: weight_map names ${shard}, which does not exist`);
      const held = readSafetensorsHeader(shardPath).entries;
      const missing = names.find((name) => !held.has(name));
      if (missing) throw new Error(`${indexPath}: weight_map puts ${missing} in ${shard}, which does not hold it`);
      for (const [name, tensor] of readSafetensors(shardPath)) weights.set(name, tensor);
    }
  } catch (error) {
    tf.dispose([...weights.values()]);
    throw error;
  }
  return weights;
}
