/**
 * The RL prompt pool: a held-out part of the train split that SFT never trains on, so that
 * sampling, DPO and GRPO see prompts the SFT model has not memorised (a model that reproduces its
 * SFT targets gives every sample the same answer: no preference pair, no GRPO advantage). After
 * DyKnow-RAG, the pool is ranked by the SFT model's uncertainty, so the most informative prompts
 * come first. Never dev or test: those stay for choosing settings and for the final figures.
 *
 * `sft` with `rl_pool: f` holds out a seeded fraction f of the train QUERIES (every pair of a
 * held-out query, like the train/dev/test split, so the pool's queries are new to the model) and
 * writes `rl-pool.json` into its checkpoint (artifacts/checkpoint.ts); dpo and grpo copy it into
 * theirs (judge/training.ts `finishTraining`); sample, dpo and grpo restrict their train prompts to it
 * (`restrictToRlPool`).
 */
import { join } from 'node:path';
import { Rng } from '../../../pipeline/api.ts';
import { normalise } from '../relevance/text.ts';
import { balancedOrder } from '../relevance/grade-balance.ts';
import { readRlPool, RL_POOL_FILE, type RlPool } from '../artifacts/checkpoint.ts';
import type { Grade, RelevanceExample } from '../relevance/types.ts';

/** A seeded `fraction` of the distinct train queries (at least one when fraction > 0). */
export function holdOutQueries(train: readonly Pick<RelevanceExample, 'query'>[], fraction: number, seed: number): RlPool {
  const queries = [...new Set(train.map((e) => normalise(e.query)))].sort();
  const count = fraction <= 0 ? 0 : Math.max(1, Math.round(fraction * queries.length));
  if (fraction > 0 && count >= queries.length) throw new Error(`rl_pool ${fraction} would hold out all ${queries.length} train queries: SFT would have nothing to train on`);
  return { fraction, queries: new Rng(seed, 'rl-pool').shuffle(queries).slice(0, count).sort() };
}

export function inRlPool(pool: RlPool, example: Pick<RelevanceExample, 'query'>): boolean {
  return pool.queries.includes(normalise(example.query));
}

/**
 * The train records an RL stage may use: the checkpoint's pool when it has one, else all of them
 * (a checkpoint whose SFT held nothing out: the stages behave as before).
 */
export async function restrictToRlPool<T extends { example: Pick<RelevanceExample, 'query'> }>(checkpointDir: string, records: T[]): Promise<T[]> {
  const pool = await readRlPool(checkpointDir);
  if (!pool) return records;
  const kept = records.filter((r) => inRlPool(pool, r.example));
  if (kept.length === 0) throw new Error(`${join(checkpointDir, RL_POOL_FILE)}: none of the ${records.length} train prompts is in the RL pool`);
  return kept;
}

/**
 * How many of a pool's prompts an RL stage samples: `share` of them (at least one), capped by
 * `limit` when it is set. Example: a pool of 194 with share 0.25 gives round(48.5) = 49; with
 * limit 32, 32. A share keeps the cost in proportion to the data; a bare limit would not.
 */
export function poolSampleSize(poolSize: number, share: number, limit: number): number {
  const byShare = Math.min(poolSize, Math.max(1, Math.round(share * poolSize)));
  return limit > 0 ? Math.min(limit, byShare) : byShare;
}

/**
 * `size` of the pool's records, a seeded sample: uniform, or with the pool's grade balance (set
 * when SFT balanced grades) weighted by gold grade without repeats (grade-balance.ts).
 */
export function drawFromPool<T extends { example: Pick<RelevanceExample, 'label'> }>(records: T[], pool: Pick<RlPool, 'balance'>, size: number, rng: Rng): T[] {
  const ordered = pool.balance ? balancedOrder(records, (r) => r.example.label, pool.balance, rng) : rng.shuffle(records);
  return ordered.slice(0, size);
}

/**
 * The entropy (nats) of the grades a model's samples gave one prompt: 0 when every sample agrees,
 * ln 4 when the four grades are equally frequent. Unparseable samples count as one more outcome.
 * Example: grades [L1, L1, L4, null] -> p = (1/2, 1/4, 1/4) -> 1.0397.
 */
export function sampledGradeEntropy(grades: readonly (Grade | null)[]): number {
  const counts = new Map<string, number>();
  for (const g of grades) counts.set(g ?? 'none', (counts.get(g ?? 'none') ?? 0) + 1);
  let entropy = 0;
  for (const c of counts.values()) entropy -= (c / grades.length) * Math.log(c / grades.length);
  return entropy;
}

/** Most uncertain first (DyKnow-RAG's ordering); ties keep the input order. */
export function rankByUncertainty<T extends { samples: { label: Grade | null }[] }>(prompts: readonly T[]): T[] {
  const entropy = prompts.map((p) => sampledGradeEntropy(p.samples.map((s) => s.label)));
  return prompts
    .map((p, i) => ({ p, i }))
    .sort((a, b) => (entropy[b.i] as number) - (entropy[a.i] as number) || a.i - b.i)
    .map(({ p }) => p);
}
