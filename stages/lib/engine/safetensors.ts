/**
 * safetensors (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length, a
 * JSON header {name: {dtype, shape, data_offsets}}, then raw little-endian data. Written here
 * because no npm package reads it for Node; the format is this small.
 * Reads F32, F16 and BF16 (into float32) and I32/I64 (into int32); writes F32.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** Reads every tensor of one .safetensors file. Errors name the file and the tensor. */
export function readSafetensors(path: string): Map<string, tf.Tensor> {
  const bytes = readFileSync(path);
  if (bytes.length < 8) throw new Error(`${path}: not a safetensors file (${bytes.length} bytes)`);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  if (8 + headerLength > bytes.length) throw new Error(`${path}: header length ${headerLength} runs past the end of the file`);
  let header: Record<string, HeaderEntry | Record<string, string>>;
  try {
    header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  } catch (error) {
    throw new Error(`${path}: unreadable header JSON: ${(error as Error).message}`);
  }
  const dataStart = 8 + headerLength;
  const tensors = new Map<string, tf.Tensor>();
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const entry = raw as HeaderEntry;
    const [begin, end] = entry.data_offsets;
    const count = entry.shape.reduce((a, b) => a * b, 1);
    const width = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8 }[entry.dtype];
    if (width === undefined) throw new Error(`${path}: tensor ${name}: dtype ${entry.dtype} is not supported (F32, F16, BF16, I32, I64)`);
    if (end - begin !== count * width || dataStart + end > bytes.length) {
      throw new Error(`${path}: tensor ${name}: data_offsets [${begin}, ${end}] do not hold ${count} ${entry.dtype} values`);
    }
    // Copy: tensors in the file need not be aligned for a typed-array view.
    const data = new Uint8Array(bytes.subarray(dataStart + begin, dataStart + end)).buffer;
    tensors.set(name, decode(entry.dtype, data, count, entry.shape));
  }
  return tensors;
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
 * Writes float32 tensors in the given order. `metadata.format = "pt"` is what transformers checks
 * before loading; the header is space-padded to a multiple of 8 bytes, as the reference writer does.
 */
export async function writeSafetensors(path: string, tensors: Map<string, tf.Tensor>, metadata: Record<string, string> = {}): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', ...metadata } };
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, tensor] of tensors) {
    const values = tensor.dtype === 'float32' ? ((await tensor.data()) as Float32Array) : Float32Array.from(await tensor.data());
    const raw = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    header[name] = { dtype: 'F32', shape: tensor.shape, data_offsets: [offset, offset + raw.byteLength] };
    chunks.push(raw);
    offset += raw.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  writeFileSync(path, Buffer.concat([length, Buffer.from(json, 'utf8'), ...chunks]));
}

/**
 * Reads a model folder's weights: `model.safetensors`, or the shards named by
 * `model.safetensors.index.json` (HF sharded layout).
 */
export function readModelWeights(dir: string): Map<string, tf.Tensor> {
  const single = join(dir, 'model.safetensors');
  const indexPath = join(dir, 'model.safetensors.index.json');
  if (existsSync(single)) return readSafetensors(single);
  if (!existsSync(indexPath)) throw new Error(`${dir}: no model.safetensors or model.safetensors.index.json`);
  let index: { weight_map?: Record<string, string> };
  try {
    index = JSON.parse(readFileSync(indexPath, 'utf8'));
  } catch (error) {
    throw new Error(`${indexPath}: unreadable JSON: ${(error as Error).message}`);
  }
  if (!index.weight_map || typeof index.weight_map !== 'object') throw new Error(`${indexPath}: missing key weight_map`);
  const weights = new Map<string, tf.Tensor>();
  const holds = new Map<string, Set<string>>();
  for (const shard of [...new Set(Object.values(index.weight_map))].sort()) {
    const shardPath = join(dir, shard);
    if (!existsSync(shardPath)) throw new Error(`${indexPath}: weight_map names ${shard}, which does not exist`);
    const tensors = readSafetensors(shardPath);
    holds.set(shard, new Set(tensors.keys()));
    for (const [name, tensor] of tensors) weights.set(name, tensor);
  }
  for (const [name, shard] of Object.entries(index.weight_map)) {
    if (!holds.get(shard)?.has(name)) {
      tf.dispose([...weights.values()]);
      throw new Error(`${indexPath}: weight_map puts ${name} in ${shard}, which does not hold it`);
    }
  }
  return weights;
}
