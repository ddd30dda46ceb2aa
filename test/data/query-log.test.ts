import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import importStage from '../../stages/import/index.ts';
import { readJsonl } from '../../stages/lib/io/jsonl.ts';
import { assignTiers, buildQueryLog, queryLogParamsSchema, readQueryLog, type QueryLogEntry } from '../../stages/lib/relevance/query-log.ts';
import { testContext } from './context.ts';

describe('query log', () => {
  it('gives Zipf frequencies and tiers by traffic share', () => {
    const queries = ['a', 'b', 'c', 'd'].map((query) => ({ query }));
    const params = queryLogParamsSchema.parse({ volume: 2500, zipf: 1, headShare: 0.5, torsoShare: 0.3 });
    const log = buildQueryLog(queries, (q) => q !== 'd', params, new Rng(1));
    // H(4, 1) = 1 + 1/2 + 1/3 + 1/4 = 25/12, so the frequencies are 2500·12/25 / r = 1200, 600, 400, 300.
    expect(log.map((e) => e.frequency)).toEqual([1200, 600, 400, 300]);
    expect(log.map((e) => e.rank)).toEqual([1, 2, 3, 4]);
    // Traffic before each: 0 (< 1250: head), 1200 (< 1250: head), 1800 (< 2000: torso), 2200 (tail).
    expect(log.map((e) => e.tier)).toEqual(['head', 'head', 'torso', 'tail']);
    expect(log.find((e) => e.query === 'd')?.new).toBe(true);
    expect(log.filter((e) => e.new)).toHaveLength(1);
    expect(new Set(log.map((e) => e.query))).toEqual(new Set(['a', 'b', 'c', 'd']));
  });

  it('tiers an imported log by its own frequencies', () => {
    const tiers = assignTiers(
      [
        { query: 'x', frequency: 1, new: false },
        { query: 'y', frequency: 9, new: false },
      ],
      { headShare: 0.5, torsoShare: 0.3 },
    );
    expect(tiers.map((e) => [e.query, e.rank, e.tier])).toEqual([
      ['y', 1, 'head'],
      ['x', 2, 'tail'],
    ]);
  });

  it('names the file, line and key of a bad line', async () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'qlog-')), 'query_log.jsonl');
    writeFileSync(file, '{"query":"a","frequency":3,"tier":"head"}\n{"query":"b","frequency":0,"tier":"tail"}\n');
    await expect(readQueryLog(file)).rejects.toThrow(`${file}:2: frequency: expected a number > 0, got 0`);
  });

  it('import writes a query log from a frequency column, skipping unreadable rows by line', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'qlog-import-'));
    // Two rows of "boots" (the larger frequency counts), one of "kettle", one without a frequency.
    writeFileSync(
      path.join(dir, 'judged.csv'),
      ['query,title,label,searches', 'boots,Leather Boots,3,70', 'boots,Rain Boots,2,70', 'kettle,Steel Kettle,3,30', 'mug,Blue Mug,1,'].join('\n'),
    );
    const ctx = testContext(importStage, {
      params: { path: 'judged.csv', labels: { scale: 'rating0to3' }, split: { train: 1, dev: 0, test: 0 }, query_log: { frequency: 'searches' } },
      configDir: dir,
    });
    await importStage.run(ctx as never);
    const log = await readJsonl<QueryLogEntry>(path.join(ctx.outDir, 'query_log.jsonl'));
    // Traffic 100: boots has 0 before it (< 50: head); kettle has 70 (>= 50, < 50 + 30: torso).
    expect(log.map((e) => [e.query, e.frequency, e.tier, e.new])).toEqual([
      ['boots', 70, 'head', false],
      ['kettle', 30, 'torso', false],
    ]);
    expect(await readJsonl(path.join(ctx.outDir, 'query_log_skipped.jsonl'))).toEqual([
      { file: path.join(dir, 'judged.csv'), line: 5, reason: 'searches: expected a number > 0, got ""' },
    ]);
  });
});
