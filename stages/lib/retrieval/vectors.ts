/**
 * The 'embeddings' artifact: vectors for a catalog's items and a dataset's queries.
 *   items.f32 / queries.f32   row-major little-endian float32, one row per item / query
 *   items.json                the catalog's item keys, in row order
 *   queries.jsonl             {queryId, query, row, text}: text is what was embedded (the query, or
 *                             the query and the model's analysis of it)
 *   embeddings.json           {dimensions, mode, pooling, items, queries}
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { readJsonl, writeJsonl } from '../io/jsonl.ts';
import type { VectorMatrix } from './ann.ts';

export interface EmbeddedQuery {
  queryId: string;
  query: string;
  row: number;
  text: string;
}

export interface EmbeddingsMeta {
  dimensions: number;
  mode: string;
  pooling: string;
  items: number;
  queries: number;
}

export interface Embeddings {
  meta: EmbeddingsMeta;
  itemKeys: string[];
  items: VectorMatrix;
  queries: EmbeddedQuery[];
  queryVectors: VectorMatrix;
}

async function writeMatrix(file: string, matrix: VectorMatrix): Promise<void> {
  await fs.writeFile(file, Buffer.from(matrix.data.buffer, matrix.data.byteOffset, matrix.data.byteLength));
}

async function readMatrix(file: string, rows: number, dimensions: number): Promise<VectorMatrix> {
  const bytes = await fs.readFile(file);
  if (bytes.byteLength !== rows * dimensions * 4) throw new Error(`${file}: expected ${rows} × ${dimensions} float32 (${rows * dimensions * 4} bytes), found ${bytes.byteLength} bytes`);
  const data = new Float32Array(rows * dimensions);
  new Uint8Array(data.buffer).set(bytes);
  return { rows, dimensions, data };
}

export async function writeEmbeddings(dir: string, embeddings: Embeddings): Promise<void> {
  await writeMatrix(path.join(dir, 'items.f32'), embeddings.items);
  await writeMatrix(path.join(dir, 'queries.f32'), embeddings.queryVectors);
  await fs.writeFile(path.join(dir, 'items.json'), `${JSON.stringify(embeddings.itemKeys)}\n`);
  await writeJsonl(path.join(dir, 'queries.jsonl'), embeddings.queries);
  await fs.writeFile(path.join(dir, 'embeddings.json'), `${JSON.stringify(embeddings.meta, null, 2)}\n`);
}

export async function readEmbeddings(dir: string): Promise<Embeddings> {
  const meta = JSON.parse(await fs.readFile(path.join(dir, 'embeddings.json'), 'utf8')) as EmbeddingsMeta;
  const itemKeys = JSON.parse(await fs.readFile(path.join(dir, 'items.json'), 'utf8')) as string[];
  const queries = await readJsonl<EmbeddedQuery>(path.join(dir, 'queries.jsonl'));
  return {
    meta,
    itemKeys,
    queries,
    items: await readMatrix(path.join(dir, 'items.f32'), itemKeys.length, meta.dimensions),
    queryVectors: await readMatrix(path.join(dir, 'queries.f32'), queries.length, meta.dimensions),
  };
}
