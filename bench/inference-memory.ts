/**
 * Memory of the onnxruntime inference path over a long run: 1,000 prompts generated in batches of
 * 16 through one session, with the policy re-exported (a new session, the old one released) every
 * BENCH_REFRESH_EVERY batches as GRPO does after each update. Prints the resident set size after
 * the first batches and at the end; a leak shows as growth proportional to the batches run.
 *
 *   npx tsx bench/inference-memory.ts          (env BENCH_PROMPTS, default 1000; BENCH_REFRESH_EVERY, default 4)
 *
 * The last line is JSON: rss_mb after warm-up (the first 5 batches) and at the end, growth per 100
 * batches fitted by least squares over the batches after warm-up, and refresh seconds (median).
 */
import { availableParallelism, loadavg } from 'node:os';
import { Rng } from '../pipeline/rng.ts';
import { createModel, initEngine, openInference, presets } from '#engine';

const PROMPTS = Number(process.env.BENCH_PROMPTS ?? 1000);
const REFRESH_EVERY = Number(process.env.BENCH_REFRESH_EVERY ?? 4);
const BATCH = 16;
const WARM_UP_BATCHES = 5;

await initEngine({ backend: 'wasm' });
const model = createModel(presets.tiny(512), new Rng(0, 'engine/init'));
const inference = await openInference(model, { inference: 'onnxruntime', threads: availableParallelism() });
const rng = new Rng(0, 'bench/memory');
const rssMb = () => process.memoryUsage().rss / 2 ** 20;
const heapMb = () => (process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers) / 2 ** 20;
const samples: Array<{ batch: number; rss: number }> = [];
const refreshS: number[] = [];
let tokens = 0;
const started = performance.now();
const batches = Math.ceil(PROMPTS / BATCH);
for (let b = 0; b < batches; b++) {
  const rows = Math.min(BATCH, PROMPTS - b * BATCH);
  // Prompts of 40-120 tokens, 48 new tokens sampled at temperature 1: the shapes change every batch.
  const prompts = Array.from({ length: rows }, () => Array.from({ length: 40 + rng.int(81) }, () => 1 + rng.int(511)));
  const generated = await inference.generate(prompts, { maxNewTokens: 48, temperature: 1, topK: 0, topP: 1, eosTokenIds: [], rng });
  tokens += generated.reduce((n, g) => n + g.tokens.length, 0);
  if (REFRESH_EVERY > 0 && (b + 1) % REFRESH_EVERY === 0) refreshS.push(await inference.refresh());
  samples.push({ batch: b + 1, rss: rssMb() });
  if ((b + 1) % 10 === 0 || b === batches - 1) console.log(`batch ${b + 1}/${batches}: rss ${rssMb().toFixed(0)} MB, JS heap + buffers ${heapMb().toFixed(0)} MB, ${tokens} tokens, ${((performance.now() - started) / 1000).toFixed(0)} s`);
}
await inference.close();

const after = samples.filter((s) => s.batch > WARM_UP_BATCHES);
const meanOf = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
const mx = meanOf(after.map((s) => s.batch));
const my = meanOf(after.map((s) => s.rss));
const slope = after.reduce((n, s) => n + (s.batch - mx) * (s.rss - my), 0) / after.reduce((n, s) => n + (s.batch - mx) ** 2, 0);
const sorted = [...refreshS].sort((a, b) => a - b);
console.log(
  JSON.stringify({
    prompts: PROMPTS,
    batches,
    tokens,
    refreshes: refreshS.length,
    refresh_s_median: sorted.length > 0 ? Number(sorted[Math.floor(sorted.length / 2)]!.toFixed(3)) : null,
    rss_mb_after_warm_up: Number(samples[WARM_UP_BATCHES - 1]!.rss.toFixed(1)),
    rss_mb_end: Number(samples[samples.length - 1]!.rss.toFixed(1)),
    rss_mb_per_100_batches: Number((slope * 100).toFixed(2)),
    wall_s: Number(((performance.now() - started) / 1000).toFixed(1)),
    loadavg_1m: Number(loadavg()[0]!.toFixed(2)),
  }),
);
