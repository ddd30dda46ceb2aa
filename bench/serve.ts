/**
 * The deployment's speed and accuracy: builds configs/deploy.yaml (cached stages are skipped),
 * starts `pipeline serve` in a child process, and drives it from this process on loopback.
 *
 *   npm run bench:serve                                  # configs/deploy.yaml
 *   npx tsx bench/serve.ts configs/deploy.yaml --seconds 5
 *
 * - cache tier: autocannon at 1, 16 and 64 connections, each request a head query all of whose
 *   items are cached (target: p99 <= 5 ms at 64 connections), taking turns with the floor
 *   (bench/serve-floor.ts: Fastify with the same schemas answering a fixed result), which says what
 *   HTTP and loopback alone cost on the machine at that moment (autocannon, in this process,
 *   shares the two cores with them; the LLM tier is idle: it runs in the server's worker thread,
 *   and these runs fail if any pair came from a tier other than the cache);
 * - the query log replayed: requests drawn by frequency (each query with its dataset candidates) at
 *   1, 16 and 64 connections; the tier of every pair from the server's /metrics;
 * - distilled tier on one core, in this process: DeepBoW pairs per CPU-second of one thread, and per
 *   wall second (target >= 10,000), each request's items parsed from JSON as the server gets them;
 * - LLM alone on the world's TEST pairs, in this process: pairs/s and Acc@2;
 * - the tiered server on the same TEST pairs (one request per query, 16 at once): pairs/s and
 *   Acc@2 (target: within 2 points of the LLM alone at >= 20x its throughput). The routing
 *   threshold was chosen on dev by the precompute stage; test is only measured here.
 *
 * - per tier (cache, distilled, LLM) at 1, 16 and 64 connections: p99 with the default logging
 *   beside the same at `--log-level warn` (per-request lines are off by default; the two should
 *   match), the LLM tier's requests served by the server started with `--min-confidence` at the 30th
 *   percentile of the distilled model's dev confidences and every tier allowed: a deployment that
 *   routes to the LLM, whose share of the replayed query log's pairs is printed too.
 *
 * Prints each section as it finishes, then one JSON line with cache_p99_ms (and the floor's),
 * distilled_pairs_s, llm_pairs_s, tiered_pairs_s, tiered_acc2, llm_acc2, tiered_llm_share,
 * cache_hit_rate and the rest. The machine may
 * be shared: compare the ratios measured in one run, not absolute figures across runs.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import autocannon from 'autocannon';
import { builtArtifacts } from '../pipeline/commands/artifacts.ts';
import { builtinStages } from '../stages/registry.ts';
import { readJsonl } from '../stages/lib/io/jsonl.ts';
import { readQueryLog, type QueryLogEntry } from '../stages/lib/relevance/query-log.ts';
import { normalise } from '../stages/lib/relevance/text.ts';
import { loadKnowledgeGraph } from '../stages/lib/relevance/kg.ts';
import { isRelevant, type Grade, type Item, type RelevanceExample } from '../stages/lib/relevance/types.ts';
import { judgeItems, type DeepBowModel } from '../stages/lib/serving/deepbow.ts';
import { cacheKeys } from '../stages/lib/serving/cache.ts';
import type { Deployment } from '../stages/lib/serving/deployment.ts';
import { judgeSourcesFrom, openLlmJudge } from '../stages/lib/serving/llm-judge.ts';
import { openDeploymentCache } from '../stages/lib/serving/load-deployment.ts';

const repo = path.resolve(import.meta.dirname, '..');
const config = process.argv[2] && !process.argv[2].startsWith('--') ? process.argv[2] : 'configs/deploy.yaml';
const secondsFlag = process.argv.indexOf('--seconds');
const seconds = secondsFlag > 0 ? Number(process.argv[secondsFlag + 1]) : 8;
const CONNECTIONS = [1, 16, 64];
const CLOCK_TICKS_S = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;
const io = { out: () => {}, err: (m: string) => process.stderr.write(`${m}\n`), cwd: repo };
const report: Record<string, unknown> = { config, load_before: os.loadavg()[0] };
const show = (section: string, value: unknown) => {
  report[section] = value;
  console.log(JSON.stringify({ [section]: value }));
};

// 1. Build what is out of date.
const build = spawnSync(process.execPath, [path.join(repo, 'bin', 'pipeline.js'), 'run', config], { cwd: repo, env: { ...process.env, CI: 'true' }, stdio: ['ignore', 'inherit', 'inherit'] });
if (build.status !== 0) throw new Error(`pipeline run ${config} failed (exit ${build.status})`);
const artifacts = await builtArtifacts(config, {}, { ...io, stages: builtinStages });
const deploymentDir = artifacts.one('deployment').dir;
const deployment = JSON.parse(readFileSync(path.join(deploymentDir, 'deployment.json'), 'utf8')) as Deployment;
const datasetDir = artifacts.objectDir(deployment.inputs.dataset);
const splits = Object.fromEntries(await Promise.all((['train', 'dev', 'test'] as const).map(async (s) => [s, await readJsonl<RelevanceExample>(path.join(datasetDir, `${s}.jsonl`))])));
const all = [...splits.train, ...splits.dev, ...splits.test] as RelevanceExample[];
const test = splits.test as RelevanceExample[];
const log = await readQueryLog(path.join(datasetDir, 'query_log.jsonl'));
const byQuery = new Map<string, RelevanceExample[]>();
for (const e of all) byQuery.set(normalise(e.query), [...(byQuery.get(normalise(e.query)) ?? []), e]);
const body = (query: string, items: RelevanceExample[]) => JSON.stringify({ query, items: items.map((e) => e.item) });
show('deployment', { route: { minConfidence: deployment.route.minConfidence, tuning: deployment.route.tuning }, cache_entries: deployment.cache.entries, test_pairs: test.length, queries: log.length });

// 2. Distilled tier on one core, in process.
const distilled = JSON.parse(readFileSync(path.join(artifacts.objectDir(deployment.inputs.distilled), 'model.json'), 'utf8')) as DeepBowModel;
const kg = distilled.features === undefined ? undefined : await loadKnowledgeGraph(artifacts.objectDir(deployment.inputs.kg));
// Each request's items parsed from its JSON, as the server gets them: new objects every time, so
// nothing the knowledge graph's reading of an item caches per object carries over between requests.
const requests = [...byQuery.values()].map((examples) => ({ query: (examples[0] as RelevanceExample).query, items: JSON.stringify(examples.map((e) => e.item)) }));
const judgeRequest = (r: (typeof requests)[number]) => judgeItems(distilled, r.query, JSON.parse(r.items) as Item[], kg).length;
// One pass first, so the timing is of compiled code; then pairs per CPU-second of this one thread
// (what one core does, whatever else the machine runs) and per wall second.
for (const r of requests) judgeRequest(r);
let distilledPairs = 0;
const distilledStart = performance.now();
const distilledCpu = process.cpuUsage();
while (performance.now() - distilledStart < 3000) for (const r of requests) distilledPairs += judgeRequest(r);
const cpu = process.cpuUsage(distilledCpu);
const distilledPairsS = distilledPairs / ((cpu.user + cpu.system) / 1e6);
const distilledWallS = distilledPairs / ((performance.now() - distilledStart) / 1000);
show('distilled', { pairs_per_cpu_s: Math.round(distilledPairsS), pairs_per_wall_s: Math.round(distilledWallS), target: 10_000 });

// 3. The LLM alone on the test pairs, in process (the judge the server's LLM tier runs).
const silent = { info: () => {}, warn: () => {}, debug: () => {} };
const judge = await openLlmJudge(judgeSourcesFrom(artifacts, artifacts.objectDir(deployment.inputs.checkpoint)), artifacts.engine, silent, { maxNewTokens: deployment.llm.maxNewTokens, batchSize: deployment.llm.maxBatch });
const llmStart = performance.now();
const llmCpu = process.cpuUsage();
const llmGrades = await judge.judge(test.map((e) => ({ id: e.id, query: e.query, item: e.item })));
const llmPairsS = test.length / ((performance.now() - llmStart) / 1000);
// Per CPU-second of all this process's threads (the judge's included): what a shared machine's
// load does not change, unlike pairs per wall second.
const llmCpuUsed = process.cpuUsage(llmCpu);
const llmPairsCpuS = test.length / ((llmCpuUsed.user + llmCpuUsed.system) / 1e6);
judge.close();
const acc2 = (grades: (Grade | null)[]) => grades.filter((g, i) => g !== null && isRelevant(g) === isRelevant((test[i] as RelevanceExample).label)).length / test.length;
const llmAcc2 = acc2(llmGrades.map((j) => j.grade));
show('llm', { pairs_s: Number(llmPairsS.toFixed(2)), pairs_per_cpu_s: Number(llmPairsCpuS.toFixed(2)), test_acc2: llmAcc2 });

// 4. The server, and the floor under its cache tier (bench/serve-floor.ts), each in its own process.
const BODY_LIMIT = 1_048_576;
const MAX_ITEMS = 256;
const children: ChildProcess[] = [];
interface Served {
  url: string;
  pid: number;
}
const listening = (args: string[], pattern: RegExp) => {
  const child = spawn(process.execPath, args, { cwd: repo, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise<Served>((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => {
      const m = pattern.exec(d.toString());
      if (m) resolve({ url: m[1] as string, pid: child.pid as number });
    });
    child.once('exit', (code) => reject(new Error(`${args.slice(-3).join(' ')} exited ${code}`)));
  });
};
const tierCounts = async ({ url }: Served) => {
  const text = await (await fetch(`${url}/metrics`)).text();
  const count = (tier: string) => Number(new RegExp(`lore_pairs_total\\{tier="${tier}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  return { cache: count('cache'), distilled: count('distilled'), llm: count('llm') };
};
const since = (before: Awaited<ReturnType<typeof tierCounts>>, after: typeof before) => ({ cache: after.cache - before.cache, distilled: after.distilled - before.distilled, llm: after.llm - before.llm });
// Every request's HTTP bytes are built once and sent in turn, so autocannon, on the same two cores,
// spends as little as it can of the CPU the server needs. Besides latency (which on a shared
// machine is mostly its queueing), each run reports the CPU the server's event-loop thread spent
// per request: what a request costs wherever it runs, and, with one thread serving `connections`
// requests in flight, latency cannot be under connections × that.
const drive = async (target: Served, bodies: string[], connections: number, duration = seconds) => {
  const before = cpuSeconds(target.pid);
  const result = await autocannon({
    url: `${target.url}/v1/relevance`,
    connections,
    duration,
    requests: bodies.map((b) => ({ method: 'POST' as const, headers: { 'content-type': 'application/json' }, body: b })),
  });
  const after = cpuSeconds(target.pid);
  const serviceUs = before && after ? Math.round(((after.eventLoop - before.eventLoop) / Math.max(1, result.requests.total)) * 1e6) : null;
  return { connections, requests_s: Math.round(result.requests.average), p50_ms: result.latency.p50, p99_ms: result.latency.p99, service_us: serviceUs, non2xx: result.non2xx, errors: result.errors, timeouts: result.timeouts };
};

try {
  const server = await listening([path.join(repo, 'bin', 'pipeline.js'), 'serve', config, '--port', '0', '--log-level', 'silent', '--body-limit', String(BODY_LIMIT), '--max-items', String(MAX_ITEMS)], /serving on (http:\/\/\S+)/);

  // Cache tier: head queries whose every item is in the cache (a head pair the judge left
  // ungraded routes like any other, and one LLM call would be measured as cache latency).
  const cache = await openDeploymentCache(deployment, deploymentDir);
  const head = log.filter((e) => e.tier === 'head' && byQuery.has(normalise(e.query)));
  const allCached = [];
  for (const e of head) {
    const examples = byQuery.get(normalise(e.query)) as RelevanceExample[];
    if ((await cache.getMany(cacheKeys(e.query, examples.map((x) => x.item)))).every((hit) => hit !== undefined)) allCached.push(body(e.query, examples));
  }
  await cache.close();
  if (allCached.length === 0) throw new Error('no head query has all its pairs in the cache: nothing to measure the cache tier with');
  // The floor answers each item with a result of the cache tier's own shape and size.
  const sample = (await (await fetch(`${server.url}/v1/relevance`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: allCached[0] })).json()) as { results: unknown[] };
  const floor = await listening(['--import', 'tsx', path.join(repo, 'bench', 'serve-floor.ts'), String(BODY_LIMIT), String(MAX_ITEMS), JSON.stringify(sample.results[0])], /floor on (http:\/\/\S+)/);
  // Floor and server take turns at each connection count, so both see the machine's load alike;
  // each is warmed first (its JIT, its connections), like a server that has been up a while.
  const beforeCache = await tierCounts(server);
  for (const target of [floor, server]) await drive(target, allCached, 16, 2);
  const cacheRuns = [];
  for (const c of CONNECTIONS) {
    const floorRun = await drive(floor, allCached, c);
    const served = await drive(server, allCached, c);
    cacheRuns.push({ ...served, floor_requests_s: floorRun.requests_s, floor_p50_ms: floorRun.p50_ms, floor_p99_ms: floorRun.p99_ms, floor_service_us: floorRun.service_us });
  }
  const cachePairs = since(beforeCache, await tierCounts(server));
  show('cache', { head_queries: head.length, fully_cached: allCached.length, runs: cacheRuns, pairs_by_tier: cachePairs, target_p99_ms_at_64: 5 });
  if (cachePairs.distilled + cachePairs.llm > 0) throw new Error(`the cache-tier runs answered ${cachePairs.distilled + cachePairs.llm} pairs from other tiers`);

  // The query log replayed by frequency.
  const before = await tierCounts(server);
  // 400 draws: traffic shares to a quarter of a percent; autocannon prebuilds every request for
  // every connection (64 × 400 here), so thousands would cost the client more than the run.
  const weighted = drawByFrequency(log, 400).flatMap((e) => (byQuery.get(normalise(e.query)) ? [body(e.query, byQuery.get(normalise(e.query)) as RelevanceExample[])] : []));
  const replayRuns = [];
  for (const c of CONNECTIONS) replayRuns.push(await drive(server, weighted, c));
  const delta = since(before, await tierCounts(server));
  const replayPairs = delta.cache + delta.distilled + delta.llm;
  show('replay', { runs: replayRuns, pairs_by_tier: delta, cache_hit_rate: delta.cache / Math.max(1, replayPairs) });

  // The tiered system on the test pairs: one request per test query, 16 at once.
  const testQueries = [...new Map(test.map((e) => [normalise(e.query), test.filter((x) => normalise(x.query) === normalise(e.query))])).values()];
  const tieredGrades = new Map<string, Grade>();
  const beforeTiered = await tierCounts(server);
  const tieredStart = performance.now();
  const tieredCpuBefore = cpuSeconds(server.pid);
  let cursor = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (cursor < testQueries.length) {
        const examples = testQueries[cursor++] as RelevanceExample[];
        for (;;) {
          const response = await fetch(`${server.url}/v1/relevance`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body((examples[0] as RelevanceExample).query, examples) });
          if (response.status === 429) {
            await new Promise((r) => setTimeout(r, 1000 * Number(response.headers.get('retry-after') ?? 1)));
            continue;
          }
          const { results } = (await response.json()) as { results: { grade: Grade }[] };
          examples.forEach((e, i) => tieredGrades.set(e.id, (results[i] as { grade: Grade }).grade));
          break;
        }
      }
    }),
  );
  const tieredPairsS = test.length / ((performance.now() - tieredStart) / 1000);
  const tieredCpuAfter = cpuSeconds(server.pid);
  // All the server's threads (the LLM worker's included), per pair: comparable with the LLM's figure.
  const tieredPairsCpuS = tieredCpuBefore && tieredCpuAfter ? test.length / Math.max(1 / CLOCK_TICKS_S, tieredCpuAfter.process - tieredCpuBefore.process) : null;
  const tieredTiers = since(beforeTiered, await tierCounts(server));
  const tieredAcc2 = acc2(test.map((e) => tieredGrades.get(e.id) ?? null));
  show('tiered', {
    pairs_s: Number(tieredPairsS.toFixed(1)),
    test_acc2: tieredAcc2,
    speedup_vs_llm: Number((tieredPairsS / llmPairsS).toFixed(1)),
    pairs_per_cpu_s: tieredPairsCpuS === null ? null : Math.round(tieredPairsCpuS),
    speedup_vs_llm_per_cpu_s: tieredPairsCpuS === null ? null : Number((tieredPairsCpuS / llmPairsCpuS).toFixed(1)),
    pairs_by_tier: tieredTiers,
    target: 'acc2 within 0.02 of the LLM at >= 20x its pairs/s',
  });

  // Per tier, default logging beside warn, and a deployment that routes to the LLM.
  const tierSeconds = Math.max(2, Math.round(seconds / 2));
  const serveArgs = (level: string, extra: string[] = []) => [path.join(repo, 'bin', 'pipeline.js'), 'serve', config, '--port', '0', '--log-level', level, '--body-limit', String(BODY_LIMIT), '--max-items', String(MAX_ITEMS), ...extra];
  const tiersOf = async (target: Served, bodies: string[]) => {
    const kept: Record<string, string[]> = { cache: [], distilled: [], llm: [] };
    for (const b of bodies) {
      const response = await fetch(`${target.url}/v1/relevance`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: b });
      if (!response.ok) continue;
      const tiers = new Set(((await response.json()) as { results: { tier: string }[] }).results.map((r) => r.tier));
      if (tiers.size === 1) kept[[...tiers][0] as string]?.push(b);
    }
    return kept;
  };
  // One item per request: a pair's tier is the request's.
  const singles = all.filter((e, i) => i % 7 === 0).slice(0, 400).map((e) => body(e.query, [e]));
  const devConfidences = (await readJsonl<{ distilled: { confidence: number } }>(path.join(artifacts.objectDir(deployment.inputs.distilled), 'dev.jsonl'))).map((r) => r.distilled.confidence).sort((a, b) => a - b);
  const routedThreshold = devConfidences[Math.floor(devConfidences.length * 0.3)] ?? 0.5;
  const routedArgs = ['--min-confidence', String(routedThreshold), '--llm-tiers', 'new,tail,torso,head'];
  const byLevel: Record<string, Record<string, { connections: number; p99_ms: number; requests_s: number; non2xx: number }[]>> = {};
  let llmShare: { threshold: number; pairs_by_tier: { cache: number; distilled: number; llm: number }; llm_share: number } | undefined;
  for (const level of ['info', 'warn']) {
    const plain = await listening(serveArgs(level), /serving on (http:\/\/\S+)/);
    const routed = await listening(serveArgs(level, routedArgs), /serving on (http:\/\/\S+)/);
    const plainTiers = await tiersOf(plain, singles);
    const routedTiers = await tiersOf(routed, singles);
    const runs: (typeof byLevel)[string] = { cache: [], distilled: [], llm: [] };
    for (const [tier, target, bodies] of [['cache', plain, allCached], ['distilled', plain, plainTiers.distilled], ['llm', routed, routedTiers.llm]] as const) {
      if (!bodies || bodies.length === 0) continue;
      for (const c of CONNECTIONS) {
        const run = await drive(target, bodies, c, tierSeconds);
        runs[tier]?.push({ connections: c, p99_ms: run.p99_ms, requests_s: run.requests_s, non2xx: run.non2xx });
      }
    }
    byLevel[level] = runs;
    if (level === 'info') {
      const beforeRouted = await tierCounts(routed);
      await drive(routed, weighted, 16, tierSeconds);
      const routedDelta = since(beforeRouted, await tierCounts(routed));
      const total = routedDelta.cache + routedDelta.distilled + routedDelta.llm;
      llmShare = { threshold: routedThreshold, pairs_by_tier: routedDelta, llm_share: routedDelta.llm / Math.max(1, total) };
    }
    for (const child of children.filter((c) => c.pid === plain.pid || c.pid === routed.pid)) child.kill('SIGTERM');
  }
  show('tiers_by_logging', { seconds_per_run: tierSeconds, default_info: byLevel.info, warn: byLevel.warn });
  show('llm_routed', llmShare);
  console.log('tier       conns  p99 ms (default)  p99 ms (warn)');
  for (const tier of ['cache', 'distilled', 'llm']) {
    for (const c of CONNECTIONS) {
      const at = (level: string) => byLevel[level]?.[tier]?.find((r) => r.connections === c)?.p99_ms;
      console.log(`${tier.padEnd(10)} ${String(c).padStart(5)}  ${String(at('info') ?? '-').padStart(16)}  ${String(at('warn') ?? '-').padStart(13)}`);
    }
  }
  if (llmShare) console.log(`LLM share of the replayed log's pairs with --min-confidence ${routedThreshold.toFixed(4)} (all tiers): ${(llmShare.llm_share * 100).toFixed(1)} %`);

  const cache64 = cacheRuns.find((r) => r.connections === 64);
  console.log(
    JSON.stringify({
      cache_p99_ms: cache64?.p99_ms,
      cache_floor_p99_ms: cache64?.floor_p99_ms,
      cache_requests_s: cache64?.requests_s,
      cache_floor_requests_s: cache64?.floor_requests_s,
      cache_service_us: cache64?.service_us,
      cache_floor_service_us: cache64?.floor_service_us,
      distilled_pairs_s: Math.round(distilledPairsS),
      llm_pairs_s: Number(llmPairsS.toFixed(2)),
      tiered_pairs_s: Number(tieredPairsS.toFixed(1)),
      tiered_acc2: tieredAcc2,
      llm_acc2: llmAcc2,
      tiered_llm_share: tieredTiers.llm / test.length,
      cache_hit_rate: (report.replay as { cache_hit_rate: number }).cache_hit_rate,
      tiered_speedup: Number((tieredPairsS / llmPairsS).toFixed(1)),
      tiered_speedup_per_cpu_s: tieredPairsCpuS === null ? null : Number((tieredPairsCpuS / llmPairsCpuS).toFixed(1)),
      min_confidence: deployment.route.minConfidence,
      routed_llm_share: llmShare?.llm_share,
      load_before: report.load_before,
      load_after: os.loadavg()[0],
    }),
  );
} finally {
  for (const child of children) child.kill('SIGTERM');
}

/** `n` queries drawn with probability ∝ frequency (a fixed stride over the cumulative counts, so the run repeats). */
function drawByFrequency(entries: readonly QueryLogEntry[], n: number): QueryLogEntry[] {
  const total = entries.reduce((a, e) => a + e.frequency, 0);
  const drawn: QueryLogEntry[] = [];
  let i = 0;
  let cumulative = entries[0]?.frequency ?? 0;
  for (let k = 0; k < n; k++) {
    const target = ((k + 0.5) / n) * total;
    while (cumulative < target && i + 1 < entries.length) cumulative += (entries[++i] as QueryLogEntry).frequency;
    drawn.push(entries[i] as QueryLogEntry);
  }
  // Interleave, so each run of the log mixes head and tail rather than sending the head first.
  return drawn.map((e, k) => ({ e, key: (k * 2654435761) % 4294967296 })).sort((a, b) => a.key - b.key).map((x) => x.e);
}

/**
 * CPU seconds of a child process from Linux's /proc (undefined elsewhere): its main thread's (the
 * event loop: schedstat's first field, nanoseconds on the CPU) and all its threads' (stat's utime +
 * stime, fields 14 and 15, in clock ticks).
 */
function cpuSeconds(pid: number): { eventLoop: number; process: number } | undefined {
  try {
    const eventLoop = Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e9;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The fields after the command name (which may hold spaces, inside parentheses) start at field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { eventLoop, process: (Number(fields[14 - 3]) + Number(fields[15 - 3])) / CLOCK_TICKS_S };
  } catch {
    return undefined;
  }
}
