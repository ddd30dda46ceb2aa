/**
 * Everything `pipeline serve` loads before it listens, each checked so that a missing or corrupt
 * file fails the start with a message naming it: deployment.json, the distilled model, the head
 * cache (and its completeness marker), the query log, the judge checkpoint (in the LLM worker).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { EngineConfig, Manifest } from '../../../pipeline/api.ts';
import { loadKnowledgeGraph, type KnowledgeGraph } from '../relevance/kg.ts';
import { QUERY_LOG_FILE, indexQueryLog, readQueryLog, type QueryLogIndex } from '../relevance/query-log.ts';
import type { PromptParams } from '../relevance/prompts.ts';
import { memoised, openRedisCache, openSqliteCache, type HeadCache, type JudgementCache } from './cache.ts';
import { DISTILLED_MODEL_FILE, deepBowProblem, type DeepBowModel } from './deepbow.ts';
import { DEPLOYMENT_FILE, deploymentProblem, type Deployment } from './deployment.ts';
import { startLlmTier, type LlmTier } from './llm-tier.ts';

export interface LoadedDeployment {
  deployment: Deployment;
  cache: JudgementCache;
  /** What routing reads: the cache behind its in-memory memo. */
  headCache: HeadCache;
  cacheEntries: number;
  distilled: DeepBowModel;
  /** Loaded when the distilled model weighs knowledge-graph features. */
  kg?: KnowledgeGraph;
  queryLog: QueryLogIndex;
  llm: LlmTier;
  /** `<pipeline>-<checkpoint stage>`: the name /v1/models lists. */
  modelName: string;
  /** Unix seconds the checkpoint was made. */
  created: number;
  close(): Promise<void>;
}

/** Reads and checks a JSON file; `problemOf` names the key that is wrong. */
export function readCheckedJson<T>(file: string, what: string, problemOf: (raw: unknown) => string | undefined): T {
  if (!existsSync(file)) throw new Error(`${file}: the ${what} is missing`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new Error(`${file}: the ${what} is not valid JSON (${(error as Error).message})`);
  }
  const problem = problemOf(raw);
  if (problem) throw new Error(`${file}: the ${what} is corrupt: ${problem}`);
  return raw as T;
}

const manifestOf = (dir: string) => readCheckedJson<Manifest>(path.join(dir, 'manifest.json'), 'artifact manifest', (m) => (typeof (m as Manifest)?.stage === 'string' ? undefined : 'stage: expected a string'));

/**
 * The deployment's head-tier cache, read-only (`dir`: the deployment artifact, where a SQLite cache
 * lives); `resilient`: a Redis cache reconnects after an outage (the server's).
 */
export function openDeploymentCache(deployment: Deployment, dir: string, options: { resilient?: boolean } = {}): Promise<JudgementCache> {
  return deployment.cache.kind === 'sqlite' ? openSqliteCache(path.join(dir, deployment.cache.file), { create: false }) : openRedisCache(deployment.cache.url, deployment.cache.prefix, options);
}

export async function loadDeployment(dir: string, objectDir: (fingerprint: string) => string, engine: EngineConfig, options: { memoEntries: number }): Promise<LoadedDeployment> {
  const deployment = readCheckedJson<Deployment>(path.join(dir, DEPLOYMENT_FILE), 'deployment', deploymentProblem);
  const distilledDir = objectDir(deployment.inputs.distilled);
  const distilled = readCheckedJson<DeepBowModel>(path.join(distilledDir, DISTILLED_MODEL_FILE), 'distilled model', deepBowProblem);
  const kgDir = objectDir(deployment.inputs.kg);
  const kg = distilled.features === undefined ? undefined : await loadKnowledgeGraph(kgDir).catch((error: Error) => {
    throw new Error(`${kgDir}: the knowledge graph the distilled model weighs cannot be loaded: ${error.message}`);
  });
  const datasetDir = objectDir(deployment.inputs.dataset);
  const queryLog = indexQueryLog(await readQueryLog(path.join(datasetDir, QUERY_LOG_FILE)).catch((error: Error) => {
    throw existsSync(path.join(datasetDir, QUERY_LOG_FILE)) ? error : new Error(`${path.join(datasetDir, QUERY_LOG_FILE)}: the query log is missing`);
  }));
  const cache = await openDeploymentCache(deployment, dir, { resilient: true });
  let cacheEntries: number;
  try {
    cacheEntries = await cache.check();
  } catch (error) {
    await cache.close();
    throw error;
  }
  const checkpointDir = objectDir(deployment.inputs.checkpoint);
  const checkpoint = manifestOf(checkpointDir);
  const promptParams = manifestOf(objectDir(deployment.inputs.prompts)).params as PromptParams;
  // An ensemble's other members (eval's ensemble) are loaded beside the primary and judge with it.
  const ensembleDirs = (deployment.inputs.ensemble ?? []).map((fingerprint) => objectDir(fingerprint));
  for (const dir of [checkpointDir, ...ensembleDirs]) {
    for (const file of ['config.json', 'model.safetensors']) if (!existsSync(path.join(dir, file))) throw new Error(`${path.join(dir, file)}: the judge checkpoint is missing this file`);
  }
  let llm: LlmTier;
  try {
    llm = await startLlmTier({
      sources: { checkpointDir, kgDir, datasetDir, promptParams, ...(ensembleDirs.length > 0 ? { ensembleDirs } : {}) },
      engine,
      options: { maxNewTokens: deployment.llm.maxNewTokens, batchSize: deployment.llm.maxBatch, grade: deployment.llm.grade, lexicalPool: deployment.llm.lexicalPool },
    });
  } catch (error) {
    await cache.close();
    throw new Error(`the LLM tier cannot load the judge in ${checkpointDir}: ${(error as Error).message}`);
  }
  return {
    deployment,
    cache,
    headCache: memoised(cache, options.memoEntries),
    cacheEntries,
    distilled,
    ...(kg ? { kg } : {}),
    queryLog,
    llm,
    modelName: `${checkpoint.pipeline}-${checkpoint.stage}`,
    created: Math.floor(Date.parse(checkpoint.created) / 1000) || 0,
    close: async () => {
      await llm.close();
      await cache.close();
    },
  };
}
