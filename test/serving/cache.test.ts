/**
 * The head-tier cache on both backends: SQLite in a temp file, and Redis against a real
 * `redis-server` (Debian's package, which .ci/run installs) started here on a free loopback port.
 * The Redis tests skip, saying why, where redis-server cannot be started.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Item } from '../../stages/lib/relevance/types.ts';
import { freePort } from './deployment-fixture.ts';
import { cacheKey, memoised, openRedisCache, openSqliteCache, type CachedJudgement, type JudgementCache } from '../../stages/lib/serving/cache.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'cache-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const boots = { title: 'Leather Boots', category: ['Shoes'], attributes: { colour: 'brown', size: '9' } };
const judged: CachedJudgement = { grade: 'L4', probabilities: { L1: 0.1, L2: 0.1, L3: 0.2, L4: 0.6 }, reasons: ['category: match'] };

async function roundTrip(open: () => Promise<JudgementCache>, reopen: () => Promise<JudgementCache>) {
  const writer = await open();
  await writer.putMany([[cacheKey('Brown Boots', boots), judged]]);
  await writer.seal(1);
  await writer.close();
  const reader = await reopen();
  try {
    expect(await reader.check()).toBe(1);
    // Keys normalise the query and cover the item's content: attribute order does not matter, a changed title does.
    const [hit, miss] = await reader.getMany([cacheKey('brown  boots', { ...boots, attributes: { size: '9', colour: 'brown' } }), cacheKey('brown boots', { ...boots, title: 'Rain Boots' })]);
    expect(hit).toEqual(judged);
    expect(miss).toBeUndefined();
  } finally {
    await reader.close();
  }
}

describe('SQLite head cache', () => {
  it('round-trips judgements and refuses an unsealed or corrupt file by name', async () => {
    const file = path.join(dir, 'cache.sqlite');
    await roundTrip(() => openSqliteCache(file, { create: true }), () => openSqliteCache(file, { create: false }));
    const unsealed = path.join(dir, 'unsealed.sqlite');
    await (await openSqliteCache(unsealed, { create: true })).close();
    const reader = await openSqliteCache(unsealed, { create: false });
    await expect(reader.check()).rejects.toThrow(`${unsealed}: the head-tier cache is incomplete`);
    await reader.close();
    const corrupt = path.join(dir, 'corrupt.sqlite');
    writeFileSync(corrupt, 'not a database at all, just text that is long enough to have a header');
    await expect(openSqliteCache(corrupt, { create: false })).rejects.toThrow(`${corrupt}: not a readable head-tier cache`);
    await expect(openSqliteCache(path.join(dir, 'none.sqlite'), { create: false })).rejects.toThrow('none.sqlite: the head-tier cache is missing');
  });
});

describe('memo in front of a served cache', () => {
  it('asks the cache once per entry, drops the first in, and answers misses in place', async () => {
    const item = (title: string) => ({ title, category: ['Shoes'], attributes: {} });
    const [a, b, c, x] = ['a', 'b', 'c', 'x'].map(item) as [Item, Item, Item, Item];
    const entries = new Map<string, CachedJudgement>([a, b, c].map((i) => [cacheKey('boots', i), { ...judged, reasons: [i.title] }]));
    const asked: string[][] = [];
    const inner: JudgementCache = {
      location: 'fake',
      getMany: async (keys) => {
        asked.push(keys.map((k) => entries.get(k)?.reasons[0] ?? 'miss'));
        return keys.map((k) => entries.get(k));
      },
      putMany: async () => {},
      seal: async () => {},
      check: async () => entries.size,
      close: async () => {},
    };
    const cache = memoised(inner, 2);
    const reasons = async (items: Item[]) => (await cache.lookup('Boots', items)).map((hit) => hit?.reasons[0] ?? '-');
    // The memo keys by what the cache keys hash: 'Boots' normalises to 'boots', as the cache's keys do.
    expect(await reasons([a, x, b])).toEqual(['a', '-', 'b']); // memo: a, b
    // Every position is an entry (no holes), so forEach visits the miss too.
    let visited = 0;
    (await cache.lookup('boots', [x, a])).forEach(() => visited++);
    expect(visited).toBe(2);
    expect(await reasons([a, c])).toEqual(['a', 'c']); // a from the memo; c fetched, a (first in) dropped: memo b, c
    expect(await reasons([b, a])).toEqual(['b', 'a']); // b from the memo; a fetched again, b dropped: memo c, a
    expect(asked).toEqual([['a', 'miss', 'b'], ['miss'], ['c'], ['a']]);
  });
});

const hasRedis = spawnSync('redis-server', ['--version']).status === 0;
describe.skipIf(!hasRedis)('Redis head cache (skipped: redis-server is not installed; .ci/run installs it)', () => {
  let redis: ChildProcess;
  let url: string;
  beforeAll(async () => {
    const port = await freePort();
    redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    url = `redis://127.0.0.1:${port}`;
    // Ready when it accepts a connection.
    for (let i = 0; i < 100; i++) {
      try {
        await (await openRedisCache(url, 'probe:')).close();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    throw new Error(`redis-server did not start on ${url}`);
  });
  afterAll(() => redis?.kill('SIGTERM'));

  it('round-trips judgements under its prefix, and names the server when a prefix is not sealed', async () => {
    await roundTrip(() => openRedisCache(url, 'lore:a:'), () => openRedisCache(url, 'lore:a:'));
    const other = await openRedisCache(url, 'lore:b:');
    await expect(other.check()).rejects.toThrow(`${url} (keys lore:b:*): the head-tier cache is missing or incomplete`);
    await other.close();
  });

  it('fails to open naming the URL when nothing listens there', async () => {
    const port = await freePort();
    await expect(openRedisCache(`redis://127.0.0.1:${port}`, 'x:')).rejects.toThrow(`redis://127.0.0.1:${port} (keys x:*): cannot connect to the head-tier cache`);
  });
});
