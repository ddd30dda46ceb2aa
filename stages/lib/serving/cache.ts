/**
 * The head tier's cache: the LLM judge's answer for each (query, item) of the head queries,
 * precomputed offline. SQLite (better-sqlite3) in the deployment artifact by default; Redis when
 * several server replicas share one cache (`cache: redis://host:port/db`).
 *
 * Keys hash the normalised query and the item's content (title, category, attributes, description,
 * caption), so an edited item is a miss, never a stale hit. Values are the judgement's JSON.
 * A complete cache carries a marker with its entry count, written last: a cache without it (a
 * precompute that died half way, a wrong database) fails the server's start.
 */
import { hash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { normalise } from '../relevance/text.ts';
import type { Grade, Item } from '../relevance/types.ts';

export interface CachedJudgement {
  grade: Grade;
  probabilities: Record<Grade, number> | null;
  reasons: string[];
}

export interface JudgementCache {
  /** Where it lives, for messages: a file or a redis URL with its key prefix. */
  readonly location: string;
  getMany(keys: readonly string[]): Promise<(CachedJudgement | undefined)[]>;
  putMany(entries: readonly [string, CachedJudgement][]): Promise<void>;
  /** Writes the completeness marker. */
  seal(entries: number): Promise<void>;
  /** The sealed entry count; an error naming the location when the cache is missing or unsealed. */
  check(): Promise<number>;
  /** For a cache that can go away (Redis): whether it answers now, and if not, why. */
  health?(): { available: boolean; problem?: string };
  close(): Promise<void>;
}

/**
 * The cache cannot be reached (Redis down or reconnecting): the server answers from the other tiers,
 * marked `fallback: "cache-unavailable"`, instead of failing the request.
 */
export class CacheUnavailableError extends Error {}

export function cacheKey(query: string, item: Item): string {
  return keyOf(cacheContents(query, [item])[0] as string);
}

/** The keys of one query's items. */
export function cacheKeys(query: string, items: readonly Item[]): string[] {
  return cacheContents(query, items).map(keyOf);
}

/** What a key hashes: the normalised query (once per request: its items share it) and each item's content. */
function cacheContents(query: string, items: readonly Item[]): string[] {
  const normalised = normalise(query);
  return items.map((item) => {
    // Attributes by name (a comparator: the default sort compares each pair as a joined string).
    const attributes = Object.entries(item.attributes).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return JSON.stringify([normalised, item.title, item.category, attributes, item.description ?? '', item.image_caption ?? '']);
  });
}

// One-shot hash (Node >= 20.12): a third of createHash's cost on contents this short.
const keyOf = (content: string) => hash('sha256', content, 'hex').slice(0, 32);

const SEAL = '__sealed__';

function parseEntry(location: string, key: string, text: string | null | undefined): CachedJudgement | undefined {
  if (text === null || text === undefined) return undefined;
  try {
    return JSON.parse(text) as CachedJudgement;
  } catch {
    throw new Error(`${location}: the entry ${key} is not JSON: the cache is corrupt (rerun the precompute stage)`);
  }
}

/** The server's view of the head cache: a query's items in, their cached judgements (or undefined) out. */
export interface HeadCache {
  lookup(query: string, items: readonly Item[]): Promise<(CachedJudgement | undefined)[]>;
  /** The cache behind's health (always available for SQLite). */
  health(): { available: boolean; problem?: string };
}

/**
 * A bounded in-process memo in front of a served cache, keyed by what a key hashes: head traffic is
 * Zipf (a few queries carry most requests), so the hottest entries are answered without hashing,
 * without a SQLite lookup or a Redis round trip, and without parsing their JSON again. Nothing goes
 * stale: a deployment's entries never change (a SQLite cache is sealed; a Redis prefix names the
 * deployment's inputs). Past `maxEntries` the first in goes: a hit is one Map lookup, where keeping
 * least-recently-used order (delete and set again) cost 3.4 µs more per item here, and a hot entry
 * that goes comes back from the cache behind on its next request. Misses are not remembered (those
 * pairs go to the other tiers anyway).
 */
export function memoised(inner: JudgementCache, maxEntries: number): HeadCache {
  const memo = new Map<string, CachedJudgement>();
  return {
    health: () => inner.health?.() ?? { available: true },
    async lookup(query, items) {
      const contents = cacheContents(query, items);
      // Filled, not holed: callers iterate with forEach, which skips holes.
      const found: (CachedJudgement | undefined)[] = new Array(items.length).fill(undefined);
      const unknown: number[] = [];
      contents.forEach((content, i) => {
        const hit = memo.get(content);
        if (hit === undefined) unknown.push(i);
        else found[i] = hit;
      });
      if (unknown.length === 0) return found;
      const fetched = await inner.getMany(unknown.map((i) => keyOf(contents[i] as string)));
      fetched.forEach((hit, j) => {
        if (hit === undefined) return;
        const i = unknown[j] as number;
        found[i] = hit;
        memo.set(contents[i] as string, hit);
        // A Map iterates in insertion order: its first key is the first in.
        if (memo.size > maxEntries) memo.delete(memo.keys().next().value as string);
      });
      return found;
    },
  };
}

/** `create`: a new, empty file (precompute); otherwise an existing one, opened read-only (serve). */
export async function openSqliteCache(file: string, options: { create: boolean }): Promise<JudgementCache> {
  const { default: Database } = await import('better-sqlite3');
  if (!options.create && !existsSync(file)) throw new Error(`${file}: the head-tier cache is missing (rerun the precompute stage)`);
  let db: import('better-sqlite3').Database;
  try {
    db = new Database(file, { readonly: !options.create, fileMustExist: !options.create });
    if (options.create) db.exec('CREATE TABLE IF NOT EXISTS judgements (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID');
    else db.prepare('SELECT count(*) FROM judgements').get();
  } catch (error) {
    throw new Error(`${file}: not a readable head-tier cache (${(error as Error).message}); rerun the precompute stage`);
  }
  if (!options.create) {
    // The server's connection keeps its shared lock for its lifetime instead of taking and
    // dropping it (and re-reading the file header to validate its page cache) around every
    // statement: 46 -> 1.4 µs per lookup here, most of a cache hit's cost. Other readers (replicas)
    // still read; only a writer is kept out, and a deployment's cache is never written once sealed.
    db.pragma('locking_mode = EXCLUSIVE');
  }
  const get = db.prepare<[string], { value: string }>('SELECT value FROM judgements WHERE key = ?');
  const put = options.create ? db.prepare('INSERT OR REPLACE INTO judgements (key, value) VALUES (?, ?)') : undefined;
  return {
    location: file,
    async getMany(keys) {
      return keys.map((key) => parseEntry(file, key, get.get(key)?.value));
    },
    async putMany(entries) {
      if (!put) throw new Error(`${file}: opened read-only`);
      db.transaction(() => {
        for (const [key, value] of entries) put.run(key, JSON.stringify(value));
      })();
    },
    async seal(entries) {
      if (!put) throw new Error(`${file}: opened read-only`);
      put.run(SEAL, JSON.stringify(entries));
    },
    async check() {
      const sealed = get.get(SEAL)?.value;
      if (sealed === undefined) throw new Error(`${file}: the head-tier cache is incomplete (no completeness marker); rerun the precompute stage`);
      return Number(JSON.parse(sealed));
    },
    async close() {
      db.close();
    },
  };
}

/** Backoff between reconnection attempts: doubling from 50 ms to at most 2 s, with jitter so replicas do not reconnect in step. */
export function reconnectDelayMs(retries: number, random = Math.random): number {
  return Math.round(Math.min(2000, 50 * 2 ** Math.min(retries, 6)) * (0.75 + 0.5 * random()));
}

/**
 * A Redis cache under `prefix` (one per deployment, so replicas of two deployments never mix).
 * `resilient` (the server's): after the first connection, a lost one is retried with backoff
 * forever, commands fail at once while it is down (CacheUnavailableError, not a queue that grows),
 * and on every reconnection the seal is read again, so a Redis that came back empty says so in
 * `health()`. Otherwise (precompute's) a lost connection fails the command.
 */
export async function openRedisCache(url: string, prefix: string, options: { resilient?: boolean } = {}): Promise<JudgementCache> {
  const { createClient } = await import('redis');
  const location = `${url} (keys ${prefix}*)`;
  let connected = false;
  let problem: string | undefined;
  const client = createClient({
    url,
    // Offline, a command fails at once rather than waiting in a queue for a server that may be gone for minutes.
    disableOfflineQueue: options.resilient === true,
    socket: { reconnectStrategy: options.resilient ? (retries: number) => (connected ? reconnectDelayMs(retries) : false) : false, connectTimeout: 5000 },
  });
  client.on('error', (error: Error) => {
    if (connected) problem = `${location}: ${error.message}`;
  });
  client.on('ready', () => {
    if (!connected) return;
    problem = undefined;
    // A Redis that restarted without its data answers every lookup with a miss: say so.
    void client.get(prefix + SEAL).then(
      (sealed) => {
        if (sealed === null) problem = `${location}: the head-tier cache has no completeness marker after reconnecting (emptied?); rerun the precompute stage`;
      },
      () => {},
    );
  });
  try {
    await client.connect();
    connected = true;
  } catch (error) {
    throw new Error(`${location}: cannot connect to the head-tier cache (${(error as Error).message})`);
  }
  const unavailable = (error: unknown) => new CacheUnavailableError(`${location}: the head-tier cache is unavailable (${(error as Error).message})`);
  return {
    location,
    async getMany(keys) {
      if (keys.length === 0) return [];
      if (options.resilient && !client.isReady) throw unavailable(new Error(problem ?? 'reconnecting'));
      let values: unknown[];
      try {
        values = await client.mGet(keys.map((k) => prefix + k));
      } catch (error) {
        if (options.resilient) throw unavailable(error);
        throw error;
      }
      return values.map((v, i) => parseEntry(location, keys[i] as string, v as string | null));
    },
    async putMany(entries) {
      if (entries.length === 0) return;
      await client.mSet(entries.map(([k, v]) => [prefix + k, JSON.stringify(v)] as [string, string]));
    },
    async seal(entries) {
      await client.set(prefix + SEAL, JSON.stringify(entries));
    },
    async check() {
      const sealed = await client.get(prefix + SEAL);
      if (sealed === null) throw new Error(`${location}: the head-tier cache is missing or incomplete (no completeness marker); rerun the precompute stage`);
      return Number(JSON.parse(sealed as string));
    },
    health() {
      return client.isReady && problem === undefined ? { available: true } : { available: false, problem: problem ?? `${location}: reconnecting` };
    },
    async close() {
      connected = false;
      // A client whose server is gone cannot say goodbye: drop the socket instead.
      if (client.isReady) await client.quit().catch(() => client.destroy());
      else if (client.isOpen) client.destroy();
    },
  };
}
