/**
 * POST /v1/search: the ranking a long-tail query is served (its BM25 ranking merged with its
 * rewrite's) on a hand-made catalog, and end to end through `pipeline serve` on a tiny world: an
 * index stage, a rewrite stage whose rewriter was trained (SFT then partial-order DPO), the
 * deployment's tiers judging what was found, and OpenAI-shaped 400s naming the field.
 */
import Fastify from 'fastify';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Item } from '../../stages/lib/relevance/types.ts';
import type { RoutingTier } from '../../stages/lib/serving/deployment.ts';
import type { PairResult } from '../../stages/lib/serving/router.ts';
import { registerSearchRoutes } from '../../stages/lib/serving/search-routes.ts';
import type { RunningServer } from '../../stages/lib/serving/server.ts';
import { buildDeployment, deploymentConfig, type BuiltDeployment } from './deployment-fixture.ts';

describe('/v1/search ranking', () => {
  // Titles only (descriptionChars 0). BM25 (k1 1.2, b 0.75; 4 items, mean length 3 terms):
  // "whisper ceiling ventilation" matches fan1 ("ventilation", 2 terms) and light ("ceiling", 4
  // terms) once each with the same IDF: the shorter fan1 first -> [fan1, light].
  // Its rewrite "exhaust fan": fan2 matches both terms, idf ln(1 + 3.5/1.5) = 1.204 and
  // ln(1 + 2.5/2.5) = 0.693, length factor 2.2 / (1 + 1.2 (0.25 + 0.75·4/3)) = 0.88 -> 1.669;
  // fan1 matches "fan" only: 0.693 · 2.2 / (1 + 1.2 (0.25 + 0.75·2/3)) = 0.803 -> [fan2, fan1].
  // Reciprocal-rank fusion (k 60): fan1 1/61 + 1/62, fan2 1/61, light 1/62 -> fan1, fan2, light.
  const catalog = [
    { key: 'fan1', item: { title: 'Ventilation Fan', category: [], attributes: {} } },
    { key: 'fan2', item: { title: 'Bathroom Exhaust Fan Quiet', category: [], attributes: {} } },
    { key: 'light', item: { title: 'Ceiling Light LED Panel', category: [], attributes: {} } },
    { key: 'cable', item: { title: 'HDMI Cable', category: [], attributes: {} } },
  ];
  const tiers: Record<string, RoutingTier> = { 'whisper ceiling ventilation': 'tail', 'ceiling light': 'head' };
  const judged: { query: string; titles: string[] }[] = [];
  const app = Fastify();
  registerSearchRoutes(
    app,
    {
      index: { source: 'index', catalog, descriptionChars: 0 },
      rewriter: { source: 'rewrite', rewrite: async (query) => (query === 'whisper ceiling ventilation' ? ['exhaust fan'] : ['never asked']) },
      maxK: 4,
      tierOf: (query) => tiers[query] ?? 'new',
      judge: async (query, items: readonly Item[]) => {
        judged.push({ query, titles: items.map((i) => i.title) });
        return items.map((i): PairResult => ({ grade: i.title.includes('Fan') ? 'L4' : 'L1', probabilities: null, tier: 'distilled', reasons: [] }));
      },
    },
    () => {},
  );
  afterAll(() => app.close());
  const search = async (body: unknown) => (await app.inject({ method: 'POST', url: '/v1/search', payload: body as object })).json() as { rewrites: string[]; query_tier: string; results: { rank: number; id: string; grade: string }[] };

  it('merges a long-tail query’s ranking with its rewrite’s, and judges the merged items for the original query', async () => {
    const answer = await search({ query: 'whisper ceiling ventilation', k: 3 });
    expect(answer.query_tier).toBe('tail');
    expect(answer.rewrites).toEqual(['exhaust fan']);
    expect(answer.results.map((r) => [r.rank, r.id, r.grade])).toEqual([
      [1, 'fan1', 'L4'],
      [2, 'fan2', 'L4'],
      [3, 'light', 'L1'],
    ]);
    expect(judged.at(-1)).toEqual({ query: 'whisper ceiling ventilation', titles: ['Ventilation Fan', 'Bathroom Exhaust Fan Quiet', 'Ceiling Light LED Panel'] });
  });

  it('serves the query alone when asked to, and never rewrites a head query', async () => {
    const plain = await search({ query: 'whisper ceiling ventilation', k: 3, rewrite: false });
    expect(plain.rewrites).toEqual([]);
    expect(plain.results.map((r) => r.id)).toEqual(['fan1', 'light']);
    const head = await search({ query: 'ceiling light' });
    expect(head.rewrites).toEqual([]);
    expect(head.results.map((r) => r.id)).toEqual(['light']);
  });
});

describe('pipeline serve --search --rewriter, on a tiny world', () => {
  let built: BuiltDeployment;
  let server: RunningServer;
  const config = `${deploymentConfig('search-api')}  index: { uses: index, needs: [world] }
  analysis: { uses: embed, needs: [sft, world], with: { mode: reason, train_steps: 0, analysis_tokens: 6 } }
  rewrite: { uses: rewrite, needs: [analysis, world, sft, kg, icl], with: { sft_steps: 3, dpo_steps: 2, batch_size: 4, rewrite_tokens: 6, base: checkpoint, judge: checkpoint, judge_tokens: 4 } }
`;
  beforeAll(async () => {
    built = buildDeployment('search-api', config);
    server = await built.serve({ search: 'index', rewriter: 'rewrite', maxK: 8 });
  }, 300_000);
  afterAll(async () => {
    await server?.drain();
    built?.remove();
  });
  const post = (url: string, body: unknown) => fetch(server.url + url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  it('trained the rewriter from the judge’s decoder, candidates graded by the trained judge: SFT on the kept rewrites, then the partial-order pairs', () => {
    const metrics = JSON.parse(readFileSync(path.join(built.artifact('rewrite'), 'metrics.json'), 'utf8')) as Record<string, number | string | boolean>;
    expect(metrics.source).toBe('rewriter');
    expect(metrics.query_log).toBe(true);
    expect(metrics.judge).toBe('checkpoint');
    expect(metrics.judge_labels).toBeGreaterThan(0);
    expect(readFileSync(path.join(built.artifact('rewrite'), 'model', 'config.json'), 'utf8')).toContain('hidden_size');
    const kept = readFileSync(path.join(built.artifact('rewrite'), 'rewrite-sft.jsonl'), 'utf8').trim().split('\n').filter(Boolean).length;
    const pairs = readFileSync(path.join(built.artifact('rewrite'), 'rewrite-pairs.jsonl'), 'utf8').trim().split('\n').filter(Boolean).length;
    expect(metrics.train_rewrites_kept).toBe(kept);
    expect(metrics.train_preference_pairs).toBe(pairs);
    expect(metrics.sft_steps).toBe(kept > 0 ? 3 : 0);
    expect(metrics.dpo_steps).toBe(pairs > 0 ? 2 : 0);
    expect(kept + pairs).toBeGreaterThan(0);
  });

  it('retrieves from the index and grades each item as /v1/relevance grades it', async () => {
    const catalog = readFileSync(path.join(built.artifact('index'), 'catalog.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { key: string; item: Item });
    const query = catalog[0]!.item.title.split(' ').slice(0, 2).join(' ');
    const response = await post('/v1/search', { query, k: 5 });
    expect(response.status).toBe(200);
    const answer = (await response.json()) as { query: string; query_tier: string; rewrites: string[]; results: { rank: number; id: string; title: string; grade: string; tier: string }[] };
    expect(answer.query).toBe(query);
    expect(['head', 'torso', 'tail', 'new']).toContain(answer.query_tier);
    expect(answer.results.length).toBeGreaterThan(0);
    expect(answer.results.length).toBeLessThanOrEqual(5);
    expect(answer.results.map((r) => r.rank)).toEqual(answer.results.map((_, i) => i + 1));
    const byKey = new Map(catalog.map((e) => [e.key, e.item]));
    for (const r of answer.results) expect(byKey.get(r.id)?.title).toBe(r.title);
    const items = answer.results.map((r) => byKey.get(r.id)!);
    const relevance = (await (await post('/v1/relevance', { query, items })).json()) as { results: { grade: string; tier: string }[] };
    expect(answer.results.map((r) => [r.grade, r.tier])).toEqual(relevance.results.map((r) => [r.grade, r.tier]));
  });

  it('answers bad requests with OpenAI-shaped 400s naming the field', async () => {
    const cases: [unknown, string][] = [
      [{}, 'query'],
      [{ query: '   ' }, 'query'],
      [{ query: 'fan', k: 0 }, 'k'],
      [{ query: 'fan', k: 9 }, 'k'],
      [{ query: 'fan', k: 2.5 }, 'k'],
      [{ query: 'fan', rewrite: 'yes' }, 'rewrite'],
      [{ query: 'fan', items: [] }, 'items'],
    ];
    for (const [body, param] of cases) {
      const response = await post('/v1/search', body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      const error = ((await response.json()) as { error: { type: string; param: string | null; message: string } }).error;
      expect(error.type).toBe('invalid_request_error');
      expect(error.param, JSON.stringify(body)).toBe(param);
    }
    const get = await fetch(`${server.url}/v1/search`);
    expect(get.status).toBe(405);
  });
});
