/**
 * Which files hold a model folder's weights: `model.safetensors`, or `model.safetensors.index.json`
 * and the shards its weight_map names. Apart from safetensors.ts so a stage's `userFiles` can list
 * them without loading TensorFlow.js.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const WEIGHTS_FILE = 'model.safetensors';
export const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';

/** The weight files of a model folder: `model.safetensors`, or the index and the shards it names. */
export function modelWeightFiles(dir: string): string[] {
  if (existsSync(join(dir, WEIGHTS_FILE))) return [WEIGHTS_FILE];
  const indexPath = join(dir, WEIGHTS_INDEX_FILE);
  if (!existsSync(indexPath)) throw new Error(`${dir}: no ${WEIGHTS_FILE} or ${WEIGHTS_INDEX_FILE}`);
  return [WEIGHTS_INDEX_FILE, ...Object.keys(readWeightMap(indexPath))];
}

/** shard file -> the tensor names the index puts in it. */
export function readWeightMap(indexPath: string): Record<string, string[]> {
  let index: { weight_map?: Record<string, string> };
  try {
    index = JSON.parse(readFileSync(indexPath, 'utf8'));
  } catch (error) {
    throw new Error(`${indexPath}: unreadable JSON: ${(error as Error).message}`);
  }
  if (!index.weight_map || typeof index.weight_map !== 'object') throw new Error(`${indexPath}: missing key weight_map`);
  const byShard: Record<string, string[]> = {};
  for (const [name, shard] of Object.entries(index.weight_map).sort(([, a], [, b]) => a.localeCompare(b))) {
    if (typeof shard !== 'string') throw new Error(`${indexPath}: weight_map.${name} must name a file, found ${JSON.stringify(shard)}`);
    (byShard[shard] ??= []).push(name);
  }
  return byShard;
}

