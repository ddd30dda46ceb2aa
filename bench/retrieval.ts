/**
 * Dense retrieval benchmark: an HNSW index (usearch, as the index stage builds it) over random
 * unit vectors, against exact (brute-force) search over the same vectors in the same process.
 *
 *   npm run bench:retrieval [-- items=100000 dimensions=64 queries=500 k=10]
 *
 * Prints the index build time, single-query latency p50/p99 of the HNSW and of exact search (and
 * their ratio), and the HNSW's recall@k against exact. Gaussian vectors have no cluster structure,
 * the hard case for a graph index: real embeddings are easier.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Rng } from '../pipeline/rng.ts';
import { buildHnsw, DEFAULT_HNSW, loadExactSearch, loadHnsw, recallAgainstExact, searchHnsw, type VectorMatrix } from '../stages/lib/retrieval/ann.ts';
import { quantile } from '../stages/lib/relevance/grade-agreement.ts';

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.split('=') as [string, string]));
const items = Number(args.items ?? 100_000);
const dimensions = Number(args.dimensions ?? 64);
const queryCount = Number(args.queries ?? 500);
const k = Number(args.k ?? 10);

function randomMatrix(rows: number, rng: Rng): VectorMatrix {
  return { rows, dimensions, data: Float32Array.from({ length: rows * dimensions }, () => rng.normal()) };
}

function latencies(run: (q: number) => void): { p50: number; p99: number } {
  const times: number[] = [];
  for (let q = 0; q < queryCount; q++) {
    const start = performance.now();
    run(q);
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return { p50: quantile(times, 0.5), p99: quantile(times, 0.99) };
}

const rng = new Rng(1);
const catalog = randomMatrix(items, rng);
const queries = randomMatrix(queryCount, rng);
const one = (q: number): VectorMatrix => ({ rows: 1, dimensions, data: queries.data.subarray(q * dimensions, (q + 1) * dimensions) });

let start = performance.now();
const index = await buildHnsw(catalog, DEFAULT_HNSW);
const buildS = (performance.now() - start) / 1000;

const searchExact = await loadExactSearch();
start = performance.now();
const exact = searchExact(catalog, queries, k);
const exactBatchS = (performance.now() - start) / 1000;
const exactOne = latencies((q) => void searchExact(catalog, one(q), k));
// The search budget (efSearch) trades latency for recall: a narrower one, the default, a wider one.
// usearch fixes efSearch when an index is opened: the built one is saved once and reopened with each.
const folder = await mkdtemp(join(tmpdir(), 'bench-retrieval-'));
const file = join(folder, 'index.usearch');
index.save(file);
const sweep: { expansion: number; p50: number; p99: number; recall: number }[] = [];
for (const expansion of [DEFAULT_HNSW.expansionSearch / 2, DEFAULT_HNSW.expansionSearch, DEFAULT_HNSW.expansionSearch * 2]) {
  const opened = await loadHnsw(file, dimensions, { ...DEFAULT_HNSW, expansionSearch: expansion });
  const approximate: ReturnType<typeof searchHnsw> = [];
  const timing = latencies((q) => approximate.push(...searchHnsw(opened, one(q), k)));
  sweep.push({ expansion, ...timing, recall: recallAgainstExact(approximate, exact, k) });
}
await rm(folder, { recursive: true });
const hnsw = sweep[1]!;
console.log(`items ${items}, dimensions ${dimensions}, queries ${queryCount}, k ${k}; HNSW M=${DEFAULT_HNSW.connectivity} efConstruction=${DEFAULT_HNSW.expansionAdd} efSearch=${DEFAULT_HNSW.expansionSearch}`);
console.log(`index build            ${buildS.toFixed(2)} s (${Math.round(items / buildS)} items/s)`);
console.log(`HNSW query latency     p50 ${hnsw.p50.toFixed(3)} ms, p99 ${hnsw.p99.toFixed(3)} ms`);
console.log(`exact query latency    p50 ${exactOne.p50.toFixed(3)} ms, p99 ${exactOne.p99.toFixed(3)} ms (all ${queryCount} in one batch: ${exactBatchS.toFixed(2)} s)`);
console.log(`exact / HNSW p50       ${(exactOne.p50 / hnsw.p50).toFixed(1)}x`);
for (const s of sweep) console.log(`efSearch ${String(s.expansion).padStart(4)}: HNSW p50 ${s.p50.toFixed(3)} ms, p99 ${s.p99.toFixed(3)} ms, recall@${k} vs exact ${s.recall.toFixed(4)}`);
