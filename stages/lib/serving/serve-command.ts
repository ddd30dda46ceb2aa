/**
 * `pipeline serve <config>`: loads the config's deployment (the precompute stage's artifact), starts
 * the LLM worker and the HTTP server, and on SIGTERM or SIGINT drains: stops accepting, answers every
 * request in flight, releases the tiers, and returns 0. It drains too when the process that started
 * it goes away: `npx pipeline serve` runs the server as npx's child, and npx, sent SIGTERM, exits
 * without passing it on; the server, left to init, would otherwise serve on undrained forever.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { checkpointEmbedder, type Embedder } from './embedding-routes.ts';
import type { EngineConfig, Inputs } from '../../../pipeline/api.ts';
import { DynamicBatcher } from './batcher.ts';
import type { LlmJudgement, PairToJudge } from './llm-judge.ts';
import type { RoutingTier } from './deployment.ts';
import { loadDeployment } from './load-deployment.ts';
import { servingMetrics } from './prometheus.ts';
import { startServer, type RunningServer, type ServerOptions } from './server.ts';
import type { QueryRewriter, SearchIndex } from './search-routes.ts';
import type { CatalogEntry } from '../retrieval/catalog.ts';

/** How often the server checks that the process that started it is still there. */
const PARENT_CHECK_MS = 250;

export interface ServeCommandOptions extends ServerOptions {
  /** The deployment stage (default: the pipeline's one deployment). */
  stage?: string;
  /** Head-cache entries kept parsed in memory (cache.ts memoised). */
  memoEntries: number;
  /** Overrides of the deployment's routing (an operator shifting load to or from the LLM without a rebuild). */
  minConfidence?: number;
  llmTiers?: RoutingTier[];
  /** An embed stage whose trained decoder also answers POST /v1/embeddings. */
  embeddings?: string;
  /** An index stage whose catalog POST /v1/search retrieves from. */
  search?: string;
  /** A rewrite stage whose rewriter rewrites /v1/search's long-tail queries. */
  rewriter?: string;
  /** Most items one /v1/search request may ask for. */
  maxK?: number;
}

/** Retrieve's default description_chars: what BM25 reads of an item when no rewrite stage says otherwise. */
const SEARCH_DESCRIPTION_CHARS = 200;

/** The catalog of index stage `name` (its catalog.jsonl), for /v1/search. */
async function indexStageCatalog(artifacts: Inputs, name: string, descriptionChars: number): Promise<SearchIndex> {
  const source = artifacts.byStage(name);
  const file = source ? join(source.dir, 'catalog.jsonl') : '';
  if (!source || source.kind !== 'index' || !existsSync(file)) throw new Error(`--search ${name}: no built index stage of that name (uses: index)`);
  const { readJsonl } = await import('../io/jsonl.ts');
  const catalog = await readJsonl<CatalogEntry>(file);
  catalog.forEach((entry, i) => {
    if (typeof entry?.key !== 'string' || typeof entry.item?.title !== 'string') throw new Error(`${file}:${i + 1}: expected {key, item: {title, ...}}`);
  });
  return { source: name, catalog, descriptionChars };
}

/**
 * The rewriter of rewrite stage `name`: its rewrites of the dataset's queries as written, and for
 * any other query its trained model's greedy rewrite (a stage trained with sft_steps/dpo_steps 0
 * has no model: other queries then get none). Generation is one request at a time.
 */
async function rewriteStageRewriter(artifacts: Inputs & { engine: EngineConfig }, name: string): Promise<QueryRewriter> {
  const source = artifacts.byStage(name);
  if (!source || source.kind !== 'rewrites') throw new Error(`--rewriter ${name}: no built rewrite stage of that name (uses: rewrite)`);
  const { readJsonl } = await import('../io/jsonl.ts');
  const { normalise } = await import('../relevance/text.ts');
  const { REWRITES_FILE } = await import('../artifacts/rewrites.ts');
  type QueryRewrites = import('../artifacts/rewrites.ts').QueryRewrites;
  const known = new Map((await readJsonl<QueryRewrites>(join(source.dir, REWRITES_FILE))).map((r) => [r.queryId, r.rewrites]));
  const modelDir = join(source.dir, 'model');
  if (!existsSync(join(modelDir, 'config.json'))) return { source: name, rewrite: async (query) => known.get(normalise(query)) ?? [] };
  const { loadPolicy, releasePolicy } = await import('../judge/model.ts');
  const { generateRewrites, servedRewrites } = await import('../retrieval/rewrite.ts');
  const { Rng } = await import('../../../pipeline/api.ts');
  const silent = { info: () => {}, warn: () => {}, debug: () => {} };
  const { policy } = await loadPolicy(modelDir, artifacts.engine, silent);
  const maxNewTokens = (source.manifest.params as { rewrite_tokens?: number }).rewrite_tokens ?? 24;
  let queue: Promise<unknown> = Promise.resolve();
  return {
    source: name,
    rewrite: async (query) => {
      const id = normalise(query);
      const precomputed = known.get(id);
      if (precomputed) return precomputed;
      const next = queue.then(() => generateRewrites(policy, [query], { maxNewTokens, rng: new Rng(0, 'serve-rewrite') }));
      queue = next.catch(() => {});
      return servedRewrites(query, [(await next)[0] ?? ''], normalise);
    },
    close: () => releasePolicy(policy),
  };
}

/** The embedder of embed stage `name`: its trained decoder (model/), texts cut as the stage cut them. */
async function embedStageEmbedder(artifacts: Inputs, name: string, maxInputs: number): Promise<Embedder> {
  const source = artifacts.byStage(name);
  const dir = source ? join(source.dir, 'model') : '';
  if (!source || source.kind !== 'embeddings' || !existsSync(join(dir, 'config.json'))) {
    throw new Error(`--embeddings ${name}: no built embed stage of that name with a trained decoder (model/: set train_steps > 0)`);
  }
  const maxTokens = (source.manifest.params as { max_tokens?: number }).max_tokens;
  if (typeof maxTokens !== 'number') throw new Error(`--embeddings ${name}: its manifest has no max_tokens param`);
  return checkpointEmbedder(dir, name, { maxTokens, maxInputs });
}

export async function startDeploymentServer(
  artifacts: Inputs & { engine: EngineConfig; objectDir(fingerprint: string): string },
  options: ServeCommandOptions,
): Promise<RunningServer> {
  const target = options.stage !== undefined ? artifacts.byStage(options.stage) : artifacts.one('deployment');
  if (!target || target.kind !== 'deployment') throw new Error(`--stage ${options.stage}: no built deployment (precompute) stage of that name`);
  const loaded = await loadDeployment(target.dir, (fp) => artifacts.objectDir(fp), artifacts.engine, { memoEntries: options.memoEntries });
  const { llm, route } = loaded.deployment;
  if (options.minConfidence !== undefined || options.llmTiers !== undefined) {
    if (options.minConfidence !== undefined) route.minConfidence = options.minConfidence;
    if (options.llmTiers !== undefined) route.llmTiers = options.llmTiers;
    route.tuning = null; // the dev figures were for the routing chosen there, not this one
  }
  // The batcher reads its limits from the deployment's own object, so they stay one setting.
  const batcher = new DynamicBatcher<PairToJudge, LlmJudgement>((pairs) => loaded.llm.judge(pairs), llm);
  let rewriter: QueryRewriter | undefined;
  let retrieval: ServerOptions['retrieval'];
  try {
    const embedder = options.embeddings === undefined ? undefined : await embedStageEmbedder(artifacts, options.embeddings, options.maxItems);
    if (options.rewriter !== undefined && options.search === undefined) throw new Error(`--rewriter ${options.rewriter}: rewrites serve /v1/search: give --search <index stage> too`);
    if (options.search !== undefined) {
      const rewriteParams = options.rewriter === undefined ? undefined : (artifacts.byStage(options.rewriter)?.manifest.params as { description_chars?: number } | undefined);
      const index = await indexStageCatalog(artifacts, options.search, rewriteParams?.description_chars ?? SEARCH_DESCRIPTION_CHARS);
      rewriter = options.rewriter === undefined ? undefined : await rewriteStageRewriter(artifacts, options.rewriter);
      retrieval = { index, ...(rewriter ? { rewriter } : {}), maxK: options.maxK ?? options.maxItems };
    }
    return await startServer(loaded, batcher, servingMetrics(), { ...options, ...(embedder ? { embedder } : {}), ...(retrieval ? { retrieval } : {}) });
  } catch (error) {
    await rewriter?.close?.();
    await loaded.close();
    throw error;
  }
}

/** The routing in force, for the console: which pairs reach the LLM, the judge, and how it was chosen. */
export function routingLine(deployment: RunningServer['deployment']): string {
  const { route, llm } = deployment;
  const judge = llm.members && llm.members.length > 1 ? `the ensemble ${llm.members.join(' + ')}` : `the judge${llm.members ? ` ${llm.members[0]}` : ''}`;
  const asked = route.minConfidence <= 0 || route.llmTiers.length === 0 ? 'the LLM is never asked (every uncached pair: the distilled model)' : `uncached pairs of ${route.llmTiers.join('+')} queries whose distilled confidence is below ${route.minConfidence.toFixed(4)} go to ${judge}`;
  const how = route.tuning
    ? `chosen on ${route.tuning.devPairs} dev pairs: tiered Acc@2 ${route.tuning.devTieredAcc2.toFixed(4)} against the LLM's ${route.tuning.devLlmAcc2.toFixed(4)}, ${(route.tuning.devLlmShare * 100).toFixed(1)} % to the LLM`
    : 'set in the config or on the command line';
  const latency = llm.batchSeconds ? `; a batch took ${(llm.batchSeconds * 1000).toFixed(0)} ms when precomputed, deadline ${llm.deadlineMs} ms` : '';
  return `routing: ${asked} (${how}${latency})`;
}

export async function serveCommand(
  artifacts: Parameters<typeof startDeploymentServer>[0],
  options: ServeCommandOptions,
  io: { out(text: string): void; err(text: string): void },
): Promise<number> {
  const server = await startDeploymentServer(artifacts, options);
  io.out(routingLine(server.deployment));
  const extra = [...(options.embeddings !== undefined ? ['POST /v1/embeddings'] : []), ...(options.search !== undefined ? [`POST /v1/search (index ${options.search}${options.rewriter !== undefined ? `, rewriter ${options.rewriter}` : ', no rewriter'})`] : [])];
  io.out(`serving on ${server.url} (pid ${process.pid}; POST /v1/relevance, POST /v1/chat/completions, POST /v1/completions, ${extra.map((e) => `${e}, `).join('')}GET /v1/models, /healthz, /metrics)`);
  await new Promise<void>((resolve) => {
    const parent = process.ppid;
    const stop = (reason: string) => {
      io.err(`${reason}: draining (answering the requests in flight) ...`);
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      clearInterval(orphaned);
      resolve();
    };
    const onTerm = () => stop('SIGTERM');
    const onInt = () => stop('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    // Only under npm (npx, npm exec, npm run set npm_command): a server started by a shell that then
    // went away (nohup) keeps serving. process.ppid reads getppid() each time: a new parent means
    // the old one is gone.
    const orphaned = setInterval(() => {
      if (process.ppid !== parent) stop(`its launcher (npm ${process.env.npm_command}, pid ${parent}) exited`);
    }, PARENT_CHECK_MS);
    orphaned.unref();
    if (process.env.npm_command === undefined) clearInterval(orphaned);
  });
  await server.drain();
  io.err('drained; bye');
  return 0;
}
