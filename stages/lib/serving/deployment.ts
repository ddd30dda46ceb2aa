/**
 * A deployment: what the precompute stage writes (deployment.json) and `pipeline serve` reads. It
 * names the artifacts the server loads by fingerprint (the judge checkpoint, the distilled model,
 * the dataset with its query log, the knowledge graph, the prompts), the head-tier cache, the
 * routing thresholds and the LLM tier's batching.
 *
 * Routing (LORE's frequency-stratified deployment): a pair whose (query, item) is in the head cache
 * is answered from it; otherwise the distilled model answers when its confidence reaches
 * `minConfidence` or the query's frequency tier is not among `llmTiers`; otherwise the LLM answers.
 */
import { GRADE_READINGS, type GradeReading } from '../relevance/grade-pooling.ts';
import type { Grade } from '../relevance/types.ts';
import type { QueryTier } from '../relevance/query-log.ts';

export const DEPLOYMENT_FILE = 'deployment.json';
export const SQLITE_CACHE_FILE = 'cache.sqlite';

/** Frequency tiers as routing sees them: the query log's, and `new` for a query it does not hold. */
export type RoutingTier = QueryTier | 'new';

/** A query's routing tier: its log tier, or `new` when it is absent from training or from the log. */
export function routingTier(entry: { tier: QueryTier; new: boolean } | undefined): RoutingTier {
  return entry === undefined || entry.new ? 'new' : entry.tier;
}

export interface Deployment {
  format: 'lore-deployment/1';
  /** Fingerprints of the artifacts served. */
  inputs: {
    checkpoint: string;
    distilled: string;
    dataset: string;
    kg: string;
    prompts: string;
    /** The other members of an ensemble judge (eval's `ensemble`), judged with `checkpoint` as one. */
    ensemble?: string[];
  };
  cache: { kind: 'sqlite'; file: string; entries: number } | { kind: 'redis'; url: string; prefix: string; entries: number };
  route: {
    minConfidence: number;
    llmTiers: RoutingTier[];
    /** How minConfidence was chosen: on dev, with the figures that chose it. */
    tuning: ThresholdChoice | null;
  };
  /**
   * grade: how the judge's grade is read (absent: the answer it wrote; see GradeReading);
   * lexicalPool: the learned lexical baseline's weight when the judge's probabilities are pooled with it.
   */
  llm: {
    maxNewTokens: number;
    grade?: GradeReading;
    lexicalPool?: number;
    maxBatch: number;
    maxWaitMs: number;
    deadlineMs: number;
    queueLimit: number;
    /** The judge's checkpoint stages (an ensemble's members, the primary first). */
    members?: string[];
    /** Seconds one batch of the judge took while precomputing, every member included (null: nothing was decoded). */
    batchSeconds?: number | null;
  };
}

/**
 * Whether the LLM can answer within its deadline: a pair waits for a whole batch, every member of an
 * ensemble decoding it, so a judge whose batch takes longer than `deadlineMs` would only ever return
 * the distilled answer late. Unknown (no batch measured) counts as able.
 */
export function llmMeetsDeadline(llm: Pick<Deployment['llm'], 'batchSeconds' | 'deadlineMs'>): boolean {
  return llm.batchSeconds === undefined || llm.batchSeconds === null || llm.batchSeconds * 1000 <= llm.deadlineMs;
}

export interface DevPair {
  gold: Grade;
  /** Answered from the cache (a head query's pair). */
  cached: boolean;
  tier: RoutingTier;
  llm: Grade | null;
  distilled: Grade;
  confidence: number;
}

export interface ThresholdChoice {
  minConfidence: number;
  /** The frequency tiers whose uncertain pairs may reach the LLM. */
  llmTiers: RoutingTier[];
  devPairs: number;
  devLlmAcc2: number;
  devTieredAcc2: number;
  /** Share of dev pairs that reach the LLM at this threshold. */
  devLlmShare: number;
  tolerance: number;
}

const relevant = (g: Grade | null) => g === 'L3' || g === 'L4';

/** Where a dev pair is answered at threshold τ, and with what grade. */
export function routeDev(pair: DevPair, minConfidence: number, llmTiers: readonly RoutingTier[]): { tier: 'cache' | 'distilled' | 'llm'; grade: Grade | null } {
  if (pair.cached) return { tier: 'cache', grade: pair.llm };
  if (pair.confidence >= minConfidence || !llmTiers.includes(pair.tier)) return { tier: 'distilled', grade: pair.distilled };
  return { tier: 'llm', grade: pair.llm };
}

/**
 * The lowest threshold (fewest LLM calls) whose tiered Acc@2 on dev is within `tolerance` of the
 * LLM alone. An unanswered grade counts wrong. Every threshold between two neighbouring dev
 * confidences routes dev alike, so the candidates are: 0 (the distilled model answers everything),
 * the midpoint of each pair of neighbours (as a decision stump splits: the same margin on either
 * side, where the upper neighbour itself would send every unseen pair just below it to the LLM),
 * and 1 (every uncached pair to the LLM).
 */
export function chooseMinConfidence(dev: readonly DevPair[], llmTiers: readonly RoutingTier[], tolerance: number): ThresholdChoice {
  if (dev.length === 0) throw new Error('cannot choose the routing threshold: no dev pairs');
  const acc2 = (grades: (Grade | null)[]) => grades.filter((g, i) => g !== null && relevant(g) === relevant((dev[i] as DevPair).gold)).length / dev.length;
  const llmAcc2 = acc2(dev.map((p) => p.llm));
  const seen = [...new Set(dev.map((p) => p.confidence))].sort((a, b) => a - b);
  const candidates = [0, ...seen.slice(1).map((c, i) => ((seen[i] as number) + c) / 2), 1];
  for (const tau of candidates) {
    const routed = dev.map((p) => routeDev(p, tau, llmTiers));
    const tiered = acc2(routed.map((r) => r.grade));
    if (tiered >= llmAcc2 - tolerance - 1e-12) {
      return { minConfidence: tau, llmTiers: [...llmTiers], devPairs: dev.length, devLlmAcc2: llmAcc2, devTieredAcc2: tiered, devLlmShare: routed.filter((r) => r.tier === 'llm').length / dev.length, tolerance };
    }
  }
  // τ = 1 sends every uncached pair of an LLM tier to the LLM; it can only miss the tolerance when
  // some tiers never reach the LLM.
  const routed = dev.map((p) => routeDev(p, 1, llmTiers));
  return { minConfidence: 1, llmTiers: [...llmTiers], devPairs: dev.length, devLlmAcc2: llmAcc2, devTieredAcc2: acc2(routed.map((r) => r.grade)), devLlmShare: routed.filter((r) => r.tier === 'llm').length / dev.length, tolerance };
}

/** Routing tiers from the rarest: a frequency cutoff lets the k rarest reach the LLM. */
export const RAREST_FIRST: readonly RoutingTier[] = ['new', 'tail', 'torso', 'head'];

/**
 * Both routing thresholds on dev: the frequency cutoff (the k rarest tiers may reach the LLM, as
 * LORE keeps its real-time LLM for rare and new queries) and, for each cutoff, the confidence
 * threshold chooseMinConfidence picks. Of the cutoffs whose tiered Acc@2 is within `tolerance` of
 * the LLM's, the one sending the fewest dev pairs to the LLM; ties go to the higher tiered Acc@2,
 * then to the wider cutoff. When no cutoff is within tolerance: every tier, at its own choice.
 */
export function chooseRoute(dev: readonly DevPair[], tolerance: number): ThresholdChoice {
  const choices = RAREST_FIRST.map((_, k) => chooseMinConfidence(dev, RAREST_FIRST.slice(0, k + 1), tolerance));
  const within = choices.filter((c) => c.devTieredAcc2 >= c.devLlmAcc2 - tolerance - 1e-12);
  if (within.length === 0) return choices[choices.length - 1] as ThresholdChoice;
  return within.reduce((best, c) => (c.devLlmShare < best.devLlmShare || (c.devLlmShare === best.devLlmShare && c.devTieredAcc2 >= best.devTieredAcc2) ? c : best));
}

/** What is wrong with a parsed deployment.json (the key and the rule), or undefined. */
export function deploymentProblem(raw: unknown): string | undefined {
  const d = raw as Partial<Deployment> | null;
  if (d === null || typeof d !== 'object') return 'expected a JSON object';
  if (d.format !== 'lore-deployment/1') return `format: expected "lore-deployment/1", got ${JSON.stringify(d.format)}`;
  for (const key of ['checkpoint', 'distilled', 'dataset', 'kg', 'prompts'] as const) if (typeof d.inputs?.[key] !== 'string') return `inputs.${key}: expected a fingerprint`;
  if (d.inputs?.ensemble !== undefined && !(Array.isArray(d.inputs.ensemble) && d.inputs.ensemble.every((f) => typeof f === 'string'))) return 'inputs.ensemble: expected a list of fingerprints';
  if (d.cache?.kind !== 'sqlite' && d.cache?.kind !== 'redis') return 'cache.kind: expected sqlite or redis';
  if (typeof d.route?.minConfidence !== 'number') return 'route.minConfidence: expected a number';
  if (!Array.isArray(d.route.llmTiers)) return 'route.llmTiers: expected a list';
  for (const key of ['maxNewTokens', 'maxBatch', 'maxWaitMs', 'deadlineMs', 'queueLimit'] as const) if (typeof d.llm?.[key] !== 'number') return `llm.${key}: expected a number`;
  if (d.llm?.grade !== undefined && !(GRADE_READINGS as readonly unknown[]).includes(d.llm.grade)) return `llm.grade: expected one of ${GRADE_READINGS.join(', ')}, got ${JSON.stringify(d.llm.grade)}`;
  const pool = d.llm?.lexicalPool;
  if (pool !== undefined && !(typeof pool === 'number' && pool >= 0 && pool <= 1)) return `llm.lexicalPool: expected a number from 0 to 1, got ${JSON.stringify(pool)}`;
  return undefined;
}
