/**
 * Dense search over item vectors: an approximate HNSW index (Malkov & Yashunin 2018) and exact
 * search as its reference, both by cosine similarity.
 *
 * The library is usearch (Unum), chosen over the other npm candidates because it installs offline
 * with nothing to build: its tarball ships prebuilt linux-x64 binaries that `node-gyp-build` loads
 * (hnswlib-node, the bindings of Malkov's reference hnswlib, compiles with node-gyp at install
 * time, which needs a compiler and Node's headers on every machine; the wasm builds of hnswlib
 * (hnswlib-wasm) see few releases and keep the index in Emscripten's file system; a pure-JS HNSW
 * would be ours to keep fast). usearch is maintained (releases every few weeks), saves and loads
 * an index as one file, and has a brute-force `exactSearch` over the same metric.
 *
 * Row i of a matrix is item i; keys in the index are row numbers.
 */
import type { Index } from 'usearch';

export interface HnswOptions {
  /** M: graph degree (usearch's connectivity). */
  connectivity: number;
  /** efConstruction: candidates kept while inserting. */
  expansionAdd: number;
  /** efSearch: candidates kept while searching. */
  expansionSearch: number;
}

export const DEFAULT_HNSW: HnswOptions = { connectivity: 16, expansionAdd: 128, expansionSearch: 128 };

/** Row-major vectors: `rows` × `dimensions` floats. */
export interface VectorMatrix {
  rows: number;
  dimensions: number;
  data: Float32Array;
}

export function row(matrix: VectorMatrix, i: number): Float32Array {
  return matrix.data.subarray(i * matrix.dimensions, (i + 1) * matrix.dimensions);
}

async function usearch() {
  return (await import('usearch')).default;
}

export async function buildHnsw(items: VectorMatrix, options: HnswOptions): Promise<Index> {
  const { Index, MetricKind, ScalarKind } = await usearch();
  const index = new Index({
    dimensions: items.dimensions,
    metric: MetricKind.Cos,
    quantization: ScalarKind.F32,
    connectivity: options.connectivity,
    expansion_add: options.expansionAdd,
    expansion_search: options.expansionSearch,
    multi: false,
  });
  if (items.rows > 0) index.add(BigUint64Array.from({ length: items.rows }, (_, i) => BigInt(i)), items.data);
  return index;
}

export async function loadHnsw(file: string, dimensions: number, options: HnswOptions): Promise<Index> {
  const { Index, MetricKind, ScalarKind } = await usearch();
  const index = new Index({ dimensions, metric: MetricKind.Cos, quantization: ScalarKind.F32, connectivity: options.connectivity, expansion_add: options.expansionAdd, expansion_search: options.expansionSearch, multi: false });
  index.load(file);
  return index;
}

export interface Neighbour {
  row: number;
  /** Cosine similarity (1 − usearch's cosine distance). */
  score: number;
}

/** usearch pads a short result with keys of −1 (2^64 − 1): dropped here. */
function neighbours(keys: BigUint64Array, distances: Float32Array, from: number, k: number, rows: number): Neighbour[] {
  const found: Neighbour[] = [];
  for (let j = from; j < from + k; j++) {
    const key = keys[j] as bigint;
    if (key >= BigInt(rows)) continue;
    found.push({ row: Number(key), score: 1 - (distances[j] as number) });
  }
  return found;
}

/** The approximate top `k` of each query row. */
export function searchHnsw(index: Index, queries: VectorMatrix, k: number): Neighbour[][] {
  if (queries.rows === 0 || index.size() === 0) return Array.from({ length: queries.rows }, () => []);
  const count = Math.min(k, index.size());
  const list = Array.from({ length: queries.rows }, (_, q) => row(queries, q));
  const matches = index.search(list, count, 0);
  return list.map((_, q) => neighbours(matches.keys, matches.distances, q * count, count, index.size()));
}

/** Loads the native library once, so `searchExact` itself is synchronous (and timed as such). */
export async function loadExactSearch(): Promise<(items: VectorMatrix, queries: VectorMatrix, k: number) => Neighbour[][]> {
  const library = await usearch();
  return (items, queries, k) => searchExactWith(library, items, queries, k);
}

/** The exact top `k` of each query row by brute force: the reference the ANN's recall is measured against. */
export async function searchExact(items: VectorMatrix, queries: VectorMatrix, k: number): Promise<Neighbour[][]> {
  return searchExactWith(await usearch(), items, queries, k);
}

function searchExactWith(library: Awaited<ReturnType<typeof usearch>>, items: VectorMatrix, queries: VectorMatrix, k: number): Neighbour[][] {
  if (queries.rows === 0 || items.rows === 0) return Array.from({ length: queries.rows }, () => []);
  const { exactSearch, MetricKind } = library;
  const count = Math.min(k, items.rows);
  const list = Array.from({ length: queries.rows }, (_, q) => row(queries, q));
  const dataset = Array.from({ length: items.rows }, (_, i) => row(items, i));
  const matches = exactSearch(dataset, list, items.dimensions, count, MetricKind.Cos);
  return list.map((_, q) => neighbours(matches.keys, matches.distances, q * count, count, items.rows));
}

/** Mean share of each query's exact top `k` that the approximate top `k` found (recall@k against exact). */
export function recallAgainstExact(approximate: readonly Neighbour[][], exact: readonly Neighbour[][], k: number): number {
  if (exact.length === 0) return 1;
  let total = 0;
  exact.forEach((truth, q) => {
    const wanted = new Set(truth.slice(0, k).map((n) => n.row));
    if (wanted.size === 0) {
      total += 1;
      return;
    }
    const found = (approximate[q] ?? []).slice(0, k).filter((n) => wanted.has(n.row)).length;
    total += found / wanted.size;
  });
  return total / exact.length;
}
