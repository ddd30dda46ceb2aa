/**
 * `uses: precompute`: LORE's head tier and the deployment bundle `pipeline serve` runs. The LLM
 * judge scores every pair of the query log's head queries (their candidates in the dataset, all
 * splits) offline, into a cache: SQLite in the artifact by default, or Redis (`cache: redis://…`)
 * when several server replicas share one. The routing threshold is chosen on dev (the distill
 * stage's dev judgements): the lowest distilled confidence whose tiered Acc@2 stays within
 * `tolerance` of the LLM's.
 *
 *   serve:
 *     uses: precompute
 *     needs: [world, kg, icl, sft, distill]
 *     with: { cache: sqlite, tiers: [head] }
 *
 * Writes a 'deployment' artifact: deployment.json (stages/lib/serving/deployment.ts) and
 * cache.sqlite (SQLite caches).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { defineStage } from '../../pipeline/api.ts';
import { GRADE_READINGS } from '../lib/relevance/grade-pooling.ts';
import { QUERY_TIERS } from '../lib/relevance/query-log.ts';

const ROUTING_TIERS = [...QUERY_TIERS, 'new'] as const;

const params = z.strictObject({
  cache: z
    .union([z.literal('sqlite'), z.string().regex(/^rediss?:\/\/./, 'expected sqlite or a redis:// URL')])
    .default('sqlite')
    .describe('Where the head-tier cache lives: sqlite (a file in the artifact) or redis://host:port/db (shared by replicas)'),
  tiers: z.array(z.enum(QUERY_TIERS)).min(1).default(['head']).describe('Query-log tiers whose pairs are precomputed into the cache'),
  min_confidence: z
    .union([z.literal('auto'), z.number().min(0).max(1)])
    .default('auto')
    .describe('Distilled answers below this confidence go to the LLM; auto: the lowest that keeps dev Acc@2 within `tolerance` of the LLM alone'),
  tolerance: z.number().min(0).max(1).default(0.02).describe('Acc@2 the tiered system may lose against the LLM alone on dev (auto threshold)'),
  llm_tiers: z
    .union([z.literal('auto'), z.array(z.enum(ROUTING_TIERS))])
    .default('auto')
    .describe('Frequency tiers whose uncertain pairs may reach the LLM (others stay with the distilled model); auto: the cutoff from the rarest (new, tail, torso, head) chosen on dev with min_confidence'),
  batch_size: z.number().int().positive().default(8).describe('Pairs the judge decodes at once while precomputing'),
  max_new_tokens: z.number().int().positive().default(160).describe("The judge's generation budget per pair (precompute and serving)"),
  // Optional, so configs without it keep their fingerprints.
  grade: z.enum(GRADE_READINGS).optional().describe("How a think-first judge's grade is read: the answer it wrote ('answer', the default) or the median of its answer probabilities after its reasoning ('median'); set it as eval's `grade` (precompute and serving)"),
  lexical_pool: z.number().min(0).max(1).optional().describe("Pool the judge's grade probabilities with the learned lexical baseline's (fitted on train), this weight on the baseline, and read the pooled median; set it as eval's `lexical_pool` (precompute and serving)"),
  // Optional, so configs without it keep their fingerprints.
  ensemble: z
    .array(z.string())
    .min(2)
    .optional()
    .describe("Judge with these checkpoint stages as one (eval's `ensemble`, the primary first; each must be in needs): the cache, the routing's dev figures and the served LLM tier all use it"),
  max_batch: z.number().int().positive().default(8).describe('Serving: most pairs the LLM tier decodes at once (dynamic batching)'),
  max_wait_ms: z.number().min(0).default(10).describe('Serving: longest a pair waits for its LLM batch to fill'),
  deadline_ms: z.number().positive().default(2000).describe("Serving: after this, a pair waiting on the LLM gets the distilled answer, marked so"),
  queue_limit: z.number().int().positive().default(256).describe('Serving: most pairs waiting for the LLM; beyond it requests get 429'),
}).refine((p) => p.llm_tiers !== 'auto' || p.min_confidence === 'auto', { path: ['llm_tiers'], message: 'auto is chosen on dev together with the confidence threshold: set min_confidence: auto, or list the tiers' });

export default defineStage({
  name: 'precompute',
  // 2: thresholds at midpoints between dev confidences, 0 allowed; llm_tiers auto (deployment.ts chooseRoute).
  version: '2',
  description: 'Score the head queries with the LLM judge into a cache (SQLite or Redis), choose the routing threshold on dev: the deployment `pipeline serve` runs',
  params,
  produces: 'deployment',
  resources: 'train',
  // A Redis cache lives outside the store: its completeness marker (the seal, with the entry count
  // deployment.json records, under a prefix that hashes the inputs and params) must still be there.
  async checkPublished({ dir }) {
    const { readFile } = await import('node:fs/promises');
    const { DEPLOYMENT_FILE } = await import('../lib/serving/deployment.ts');
    const deployment = JSON.parse(await readFile(path.join(dir, DEPLOYMENT_FILE), 'utf8')) as import('../lib/serving/deployment.ts').Deployment;
    if (deployment.cache.kind !== 'redis') return undefined;
    const { openRedisCache } = await import('../lib/serving/cache.ts');
    const cache = await openRedisCache(deployment.cache.url, deployment.cache.prefix);
    try {
      const sealed = await cache.check().catch((error: Error) => error);
      if (sealed instanceof Error) return sealed.message;
      return sealed === deployment.cache.entries ? undefined : `${cache.location}: the completeness marker says ${sealed} entries, deployment.json ${deployment.cache.entries}`;
    } finally {
      await cache.close();
    }
  },
  async run(ctx) {
    const p = ctx.params;
    const { readSplits, SPLITS } = await import('../lib/artifacts/dataset.ts');
    const { writeJson } = await import('../lib/io/json.ts');
    const { readQueryLog, indexQueryLog, QUERY_LOG_FILE } = await import('../lib/relevance/query-log.ts');
    const { normalise } = await import('../lib/relevance/text.ts');
    const { labelResumably } = await import('../lib/serving/label.ts');
    const { cacheKey, openSqliteCache, openRedisCache } = await import('../lib/serving/cache.ts');
    const { chooseMinConfidence, chooseRoute, llmMeetsDeadline, routingTier, DEPLOYMENT_FILE, SQLITE_CACHE_FILE } = await import('../lib/serving/deployment.ts');
    const { readDistilledDev } = await import('../lib/artifacts/distilled.ts');
    type Deployment = import('../lib/serving/deployment.ts').Deployment;
    type RoutingTier = import('../lib/serving/deployment.ts').RoutingTier;

    const dataset = ctx.inputs.one('dataset');
    const logFile = path.join(dataset.dir, QUERY_LOG_FILE);
    if (!existsSync(logFile)) throw new Error(`${logFile} is missing: precompute needs a query log (the world writes one; import reads a frequency column or a log file)`);
    const log = indexQueryLog(await readQueryLog(logFile));
    const splits = await readSplits(dataset.dir);
    const cachedTiers = new Set<string>(p.tiers);
    const head = SPLITS.flatMap((s) => splits[s]).filter((e) => cachedTiers.has(log.get(normalise(e.query))?.tier ?? 'new'));
    ctx.log.info(`${head.length} pairs of ${new Set(head.map((e) => normalise(e.query))).size} ${p.tiers.join('+')} queries to precompute`);

    const members = p.ensemble ?? [ctx.inputs.one('checkpoint').stage];
    const timing = { batches: 0, seconds: 0 };
    const labelled = await labelResumably(ctx, head, { file: path.join(ctx.workDir, 'head.jsonl'), unit: 'head', batchSize: p.batch_size, maxNewTokens: p.max_new_tokens, grade: p.grade, lexicalPool: p.lexical_pool, ensemble: p.ensemble, timing });
    // A batch's time as the server's LLM tier will see it: every member of an ensemble decodes it.
    const batchSeconds = timing.batches > 0 ? timing.seconds / timing.batches : null;
    const entries: [string, import('../lib/serving/cache.ts').CachedJudgement][] = [];
    for (const e of head) {
      const j = labelled.get(e.id);
      if (j?.grade) entries.push([cacheKey(e.query, e.item), { grade: j.grade, probabilities: j.probabilities, reasons: j.reasoning }]);
    }
    const unanswered = head.length - entries.length;
    if (unanswered > 0) ctx.log.warn(`${unanswered} head pairs got no grade from the judge: not cached (they route like any other pair)`);

    const inputsHash = createHash('sha256').update(JSON.stringify([ctx.inputs.all.map((a) => a.fingerprint), p])).digest('hex').slice(0, 16);
    const prefix = `lore:${ctx.pipeline}:${ctx.stage}:${inputsHash}:`;
    const cache = p.cache === 'sqlite' ? await openSqliteCache(path.join(ctx.outDir, SQLITE_CACHE_FILE), { create: true }) : await openRedisCache(p.cache, prefix);
    try {
      await cache.putMany(entries);
      await cache.seal(entries.length);
    } finally {
      await cache.close();
    }

    const distilled = ctx.inputs.one('distilled');
    const devRows = await readDistilledDev(distilled.dir);
    const dev = devRows.map((r) => {
      const entry = log.get(normalise(r.query));
      return { gold: r.gold, cached: entry !== undefined && cachedTiers.has(entry.tier), tier: routingTier(entry), llm: r.llm.grade, distilled: r.distilled.grade, confidence: r.distilled.confidence };
    });
    const tuning = p.min_confidence !== 'auto' ? null : p.llm_tiers === 'auto' ? chooseRoute(dev, p.tolerance) : chooseMinConfidence(dev, p.llm_tiers, p.tolerance);
    // The judge's latency counts too: one whose batch (all its members) outlasts the deadline would
    // only ever answer late, so auto routing sends it nothing.
    const tooSlow = tuning !== null && !llmMeetsDeadline({ batchSeconds, deadlineMs: p.deadline_ms });
    if (tooSlow) {
      ctx.log.warn(
        `routing: the judge (${members.length} member${members.length > 1 ? 's' : ''}) took ${((batchSeconds as number) * 1000).toFixed(0)} ms per batch of ${p.batch_size} here, over deadline_ms ${p.deadline_ms}: nothing is routed to the LLM (raise deadline_ms, lower batch_size or the ensemble's size, or set min_confidence)`,
      );
    }
    const minConfidence = tuning ? (tooSlow ? 0 : tuning.minConfidence) : (p.min_confidence as number);
    // Without tuning, the params say both (the refine above refuses auto tiers with a set threshold).
    const llmTiers = tuning ? tuning.llmTiers : (p.llm_tiers as RoutingTier[]);
    if (tuning) {
      ctx.log.info(
        `routing: min_confidence ${minConfidence.toFixed(4)} for ${llmTiers.join('+')} queries chosen on ${tuning.devPairs} dev pairs: tiered Acc@2 ${tuning.devTieredAcc2.toFixed(4)} against the LLM's ${tuning.devLlmAcc2.toFixed(4)}, ${(tuning.devLlmShare * 100).toFixed(1)}% of dev pairs to the LLM`,
      );
    }
    const fingerprintOf = (kind: 'distilled' | 'dataset' | 'kg' | 'prompts') => ctx.inputs.one(kind).fingerprint;
    const memberArtifacts = p.ensemble ? p.ensemble.map((stage) => ctx.inputs.byStage(stage) as { stage: string; fingerprint: string }) : [ctx.inputs.one('checkpoint')];
    const deployment: Deployment = {
      format: 'lore-deployment/1',
      inputs: { checkpoint: (memberArtifacts[0] as { fingerprint: string }).fingerprint, ...(memberArtifacts.length > 1 ? { ensemble: memberArtifacts.slice(1).map((m) => m.fingerprint) } : {}), distilled: fingerprintOf('distilled'), dataset: fingerprintOf('dataset'), kg: fingerprintOf('kg'), prompts: fingerprintOf('prompts') },
      cache: p.cache === 'sqlite' ? { kind: 'sqlite', file: SQLITE_CACHE_FILE, entries: entries.length } : { kind: 'redis', url: p.cache, prefix, entries: entries.length },
      route: { minConfidence, llmTiers, tuning },
      llm: { maxNewTokens: p.max_new_tokens, ...(p.grade ? { grade: p.grade } : {}), ...(p.lexical_pool !== undefined ? { lexicalPool: p.lexical_pool } : {}), maxBatch: p.max_batch, maxWaitMs: p.max_wait_ms, deadlineMs: p.deadline_ms, queueLimit: p.queue_limit, members, batchSeconds },
    };
    await writeJson(path.join(ctx.outDir, DEPLOYMENT_FILE), deployment);
    return {
      metrics: {
        cached_pairs: entries.length,
        cached_queries: new Set(head.map((e) => normalise(e.query))).size,
        unanswered,
        min_confidence: minConfidence,
        ...(tuning ? { dev_tiered_acc2: tuning.devTieredAcc2, dev_llm_acc2: tuning.devLlmAcc2, dev_llm_share: tuning.devLlmShare } : {}),
      },
    };
  },
});
