/**
 * A query log: how often shoppers type each query. LORE deploys its judge by query frequency (head
 * queries scored offline and cached, the bulk by a distilled model, rare and new ones by the LLM),
 * so the world writes one, and `import` reads one (a frequency column or a separate log file).
 *
 * Search traffic is Zipf-distributed (frequency of the query at rank r ∝ r^-s, s ≈ 1): the world
 * gives each of its queries a random rank and a frequency `volume · r^-s / H(n, s)`. Tiers follow
 * traffic share: head is the fewest top-ranked queries that carry `headShare` of the traffic, torso
 * the next ones up to `headShare + torsoShare`, tail the rest. A query outside the train split is
 * `new` (absent from training), as a real log's unseen queries are.
 *
 * File: query_log.jsonl in the dataset artifact, one {query, queryId, frequency, rank, tier, new}
 * per line, most frequent first.
 */
import { z } from 'zod';
import type { Rng } from '../../../pipeline/api.ts';
import { forEachJsonl } from '../io/jsonl.ts';
import { normalise } from './text.ts';

export const QUERY_LOG_FILE = 'query_log.jsonl';
export const QUERY_TIERS = ['head', 'torso', 'tail'] as const;
export type QueryTier = (typeof QUERY_TIERS)[number];

export const queryLogParamsSchema = z
  .strictObject({
    volume: z.number().int().min(1).default(100_000).describe('Searches the log stands for (the sum of all frequencies, before rounding).'),
    zipf: z.number().min(0).default(1).describe('Zipf exponent s: the query at rank r is searched ∝ r^-s times (web search logs measure s ≈ 1).'),
    headShare: z.number().min(0).max(1).default(0.5).describe('Share of the traffic carried by the head tier (the most frequent queries).'),
    torsoShare: z.number().min(0).max(1).default(0.3).describe('Share of the traffic carried by the torso tier, after the head; the tail carries the rest.'),
  })
  .refine((p) => p.headShare + p.torsoShare <= 1, { message: 'headShare + torsoShare must be at most 1' })
  .default({ volume: 100_000, zipf: 1, headShare: 0.5, torsoShare: 0.3 })
  .describe('The query log the world writes (query_log.jsonl): Zipf frequencies and head/torso/tail tiers.');
export type QueryLogParams = z.output<typeof queryLogParamsSchema>;

export interface QueryLogEntry {
  query: string;
  queryId?: string;
  /** Searches in the log's period; at least 1. */
  frequency: number;
  /** 1 = most frequent. */
  rank: number;
  tier: QueryTier;
  /** Absent from the training data. */
  new: boolean;
}

/**
 * Ranks, frequencies and tiers for `queries` (distinct texts). `inTraining` tells which are
 * in the train split. The ranks are a seeded random permutation, so frequency is independent of
 * intent and split.
 */
export function buildQueryLog(
  queries: readonly { query: string; queryId?: string }[],
  inTraining: (query: string) => boolean,
  params: QueryLogParams,
  rng: Rng,
): QueryLogEntry[] {
  const order = rng.shuffle(queries.map((_, i) => i));
  const weights = order.map((_, r) => (r + 1) ** -params.zipf);
  const harmonic = weights.reduce((a, b) => a + b, 0);
  const entries = order.map((index, r) => {
    const { query, queryId } = queries[index] as { query: string; queryId?: string };
    const frequency = Math.max(1, Math.round((params.volume * (weights[r] as number)) / harmonic));
    return { query, ...(queryId !== undefined ? { queryId } : {}), frequency, rank: r + 1, new: !inTraining(query) };
  });
  return assignTiers(entries, params);
}

/** Tiers by cumulative traffic share over entries sorted most frequent first (ranks renumbered). */
export function assignTiers(entries: readonly Omit<QueryLogEntry, 'tier' | 'rank'>[], shares: Pick<QueryLogParams, 'headShare' | 'torsoShare'>): QueryLogEntry[] {
  const sorted = [...entries].sort((a, b) => b.frequency - a.frequency);
  const total = sorted.reduce((n, e) => n + e.frequency, 0);
  let before = 0;
  return sorted.map((entry, r) => {
    // A query belongs to the head while the traffic before it is under the head's share, so the head
    // is the fewest queries that reach it.
    const tier: QueryTier = before < shares.headShare * total ? 'head' : before < (shares.headShare + shares.torsoShare) * total ? 'torso' : 'tail';
    before += entry.frequency;
    return { ...entry, rank: r + 1, tier };
  });
}

/** A query log by normalised query text. */
export type QueryLogIndex = Map<string, QueryLogEntry>;

export function indexQueryLog(entries: readonly QueryLogEntry[]): QueryLogIndex {
  return new Map(entries.map((e) => [normalise(e.query), e]));
}

/** Reads query_log.jsonl; a line without a query text or a positive frequency is an error naming file, line and key. */
export async function readQueryLog(file: string): Promise<QueryLogEntry[]> {
  const entries: QueryLogEntry[] = [];
  await forEachJsonl<QueryLogEntry>(file, (record, line) => {
    if (typeof record?.query !== 'string' || record.query.trim() === '') throw new Error(`${file}:${line}: query: expected a non-empty string`);
    if (typeof record.frequency !== 'number' || !(record.frequency > 0)) throw new Error(`${file}:${line}: frequency: expected a number > 0, got ${JSON.stringify(record.frequency)}`);
    if (!QUERY_TIERS.includes(record.tier)) throw new Error(`${file}:${line}: tier: expected one of ${QUERY_TIERS.join(', ')}, got ${JSON.stringify(record.tier)}`);
    entries.push(record);
  });
  return entries;
}

// ---------------------------------------------------------------------------------------------
// Query logs of imported data: a frequency column of the imported file, or a separate log file.

export const importQueryLogSchema = z
  .strictObject({
    path: z.string().min(1).optional().describe("A separate query-log file (UTF-8 CSV, TSV or JSONL, by extension) relative to the config's folder; without it, the imported file itself"),
    query: z.string().default('query').describe('Column with the query text'),
    frequency: z.string().default('frequency').describe('Column with how often the query was searched (a number > 0)'),
    headShare: z.number().min(0).max(1).default(0.5).describe('Share of the traffic carried by the head tier'),
    torsoShare: z.number().min(0).max(1).default(0.3).describe('Share of the traffic carried by the torso tier, after the head'),
  })
  .optional()
  .describe('Write query_log.jsonl from a frequency column or a separate log file (what precompute and serve route by)');
export type ImportQueryLog = NonNullable<z.output<typeof importQueryLogSchema>>;

export interface QueryLogSkipped {
  file: string;
  line: number;
  reason: string;
}

/**
 * Reads query and frequency columns from a CSV, TSV or JSONL file, one row per line (a query's
 * rows may repeat: its frequency is the largest given). Rows without a query or with a frequency
 * that is not a number > 0 are skipped and reported with their line.
 */
export async function readFrequencies(file: string, columns: { query: string; frequency: string }): Promise<{ frequencies: Map<string, { query: string; frequency: number }>; skipped: QueryLogSkipped[] }> {
  const { readFileSync } = await import('node:fs');
  const text = readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
  const rows: { line: number; get(column: string): unknown }[] = [];
  if (/\.(jsonl|ndjson)$/i.test(file)) {
    text.split(/\r?\n/).forEach((line, i) => {
      if (line.trim() === '') return;
      let record: Record<string, unknown> = {};
      try {
        record = JSON.parse(line) as Record<string, unknown>;
      } catch {
        record = {};
      }
      rows.push({ line: i + 1, get: (c) => record?.[c] });
    });
  } else {
    const { parse } = await import('csv-parse/sync');
    const records = parse(text, { delimiter: /\.(tsv|tab)$/i.test(file) ? '\t' : ',', info: true, relax_column_count: true, skip_empty_lines: true }) as unknown as { record: string[]; info: { lines: number } }[];
    const [header, ...body] = records;
    const names = header?.record.map((c) => c.trim()) ?? [];
    for (const name of [columns.query, columns.frequency]) if (!names.includes(name)) throw new Error(`${file}:1: no column "${name}" (columns: ${names.join(', ')})`);
    for (const { record, info } of body) rows.push({ line: info.lines, get: (c) => record[names.indexOf(c)] });
  }
  const frequencies = new Map<string, { query: string; frequency: number }>();
  const skipped: QueryLogSkipped[] = [];
  for (const row of rows) {
    const query = row.get(columns.query);
    const frequency = Number(row.get(columns.frequency));
    if (typeof query !== 'string' || query.trim() === '') skipped.push({ file, line: row.line, reason: `${columns.query}: expected a query text` });
    else if (!(frequency > 0) || !Number.isFinite(frequency)) skipped.push({ file, line: row.line, reason: `${columns.frequency}: expected a number > 0, got ${JSON.stringify(row.get(columns.frequency) ?? null)}` });
    else {
      const key = normalise(query);
      frequencies.set(key, { query, frequency: Math.max(frequency, frequencies.get(key)?.frequency ?? 0) });
    }
  }
  return { frequencies, skipped };
}

/** The log of an imported dataset: every query with a frequency, tiered; `new` = not in the train split. */
export function importedQueryLog(frequencies: ReadonlyMap<string, { query: string; frequency: number }>, trainQueries: ReadonlySet<string>, shares: Pick<ImportQueryLog, 'headShare' | 'torsoShare'>): QueryLogEntry[] {
  return assignTiers(
    [...frequencies].map(([key, { query, frequency }]) => ({ query, frequency, new: !trainQueries.has(key) })),
    shares,
  );
}
