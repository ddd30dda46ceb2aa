/**
 * A deployment whose routing does send pairs to the LLM (precompute's min_confidence 1: every
 * uncached pair of every tier): the routing said on the console, concurrent requests' pairs decoded
 * together in batches, a request whose pairs do not fit the queue answered 429 with Retry-After,
 * and a pair past its deadline answered by the distilled model, marked.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readJsonl } from '../../stages/lib/io/jsonl.ts';
import { readQueryLog } from '../../stages/lib/relevance/query-log.ts';
import { normalise } from '../../stages/lib/relevance/text.ts';
import type { RelevanceExample } from '../../stages/lib/relevance/types.ts';
import type { RunningServer } from '../../stages/lib/serving/server.ts';
import { bin, buildDeployment, deploymentConfig, type BuiltDeployment } from './deployment-fixture.ts';

const QUEUE_LIMIT = 6;
const MAX_BATCH = 4;
let built: BuiltDeployment;
let server: RunningServer;
let uncached: RelevanceExample[];

beforeAll(async () => {
  built = buildDeployment('routed', deploymentConfig('routed', `{ max_new_tokens: 4, min_confidence: 1, llm_tiers: [new, tail, torso, head], max_batch: ${MAX_BATCH}, max_wait_ms: 200, queue_limit: ${QUEUE_LIMIT}, deadline_ms: 120000 }`));
  server = await built.serve();
  const world = built.artifact('world');
  const log = await readQueryLog(path.join(world, 'query_log.jsonl'));
  const head = new Set(log.filter((e) => e.tier === 'head').map((e) => normalise(e.query)));
  uncached = (await readJsonl<RelevanceExample>(path.join(world, 'test.jsonl'))).filter((e) => !head.has(normalise(e.query)));
}, 300_000);
afterAll(async () => {
  await server?.drain();
  built?.remove();
});

type Result = { tier: string; fallback?: string };
const relevance = (examples: RelevanceExample[]) =>
  fetch(`${server.url}/v1/relevance`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: (examples[0] as RelevanceExample).query, items: examples.map((e) => e.item) }) });
const gauge = async (name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(await (await fetch(`${server.url}/metrics`)).text())?.[1] ?? NaN);

describe('a deployment that routes to the LLM', () => {
  it('says its routing on the console when it starts', { timeout: 180_000 }, async () => {
    const child = spawn(process.execPath, [bin, 'serve', 'pipeline.yaml', '--port', '0', '--log-level', 'silent'], { cwd: built.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout?.on('data', (d) => {
        out += d;
        if (out.includes('serving on')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`serve exited ${code}`)));
    });
    child.kill('SIGTERM');
    expect(out).toMatch(/routing: uncached pairs of new\+tail\+torso\+head queries whose distilled confidence is below 1\.0000 go to the judge sft \(set in the config/);
  });

  it("decodes concurrent requests' pairs together", { timeout: 180_000 }, async () => {
    expect(server.deployment.route.minConfidence).toBe(1);
    const batchesBefore = await gauge('lore_llm_batches');
    const pairsBefore = await gauge('lore_llm_batched_pairs');
    const pairs = uncached.slice(0, 2 * MAX_BATCH);
    const answers = await Promise.all(pairs.map(async (e) => relevance([e]).then(async (r) => ({ status: r.status, body: (await r.json()) as { results: Result[] } }))));
    for (const answer of answers) {
      expect(answer.status).toBe(200);
      expect(answer.body.results[0]?.tier).toBe('llm');
    }
    expect((await gauge('lore_llm_batched_pairs')) - pairsBefore).toBe(pairs.length);
    // Eight pairs arriving together fill batches of four (at most one batch started before the rest came).
    expect((await gauge('lore_llm_batches')) - batchesBefore).toBeLessThanOrEqual(3);
  });

  it('answers 429 with Retry-After when the pairs do not fit the queue', async () => {
    const byQuery = uncached.filter((e) => normalise(e.query) === normalise((uncached[0] as RelevanceExample).query));
    const many = Array.from({ length: QUEUE_LIMIT + 1 }, (_, i) => ({ ...(byQuery[i % byQuery.length] as RelevanceExample), item: { ...(byQuery[i % byQuery.length] as RelevanceExample).item, title: `${(byQuery[i % byQuery.length] as RelevanceExample).item.title} ${i}` } }));
    const response = await relevance(many);
    expect(response.status).toBe(429);
    expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(((await response.json()) as { error: { type: string; code: string } }).error).toMatchObject({ type: 'rate_limit_error', code: 'queue_full' });
  });

  it('answers a pair past its deadline with the distilled answer, marked', async () => {
    const saved = server.deployment.llm.deadlineMs;
    server.deployment.llm.deadlineMs = 1;
    try {
      const response = await relevance([uncached[1] as RelevanceExample]);
      expect(response.status).toBe(200);
      expect(((await response.json()) as { results: Result[] }).results[0]).toMatchObject({ tier: 'distilled', fallback: 'deadline' });
    } finally {
      server.deployment.llm.deadlineMs = saved;
    }
  });
});
