/**
 * A hand-made Japanese catalog (8 pairs over 4 queries, every query written in Japanese only)
 * through import -> kg -> icl with evidence: words are segmented, so an exact match reads as one,
 * and each query is its own group in the split.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readJsonl } from '../../stages/lib/io/jsonl.ts';
import type { PromptRecord } from '../../stages/lib/relevance/prompts.ts';
import type { RelevanceExample } from '../../stages/lib/relevance/types.ts';

const bin = path.join(import.meta.dirname, '..', '..', 'bin', 'pipeline.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'japanese-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CSV = `query,title,label
防水 ハイキングブーツ,メンズ 防水 ハイキングブーツ 軽量 ブラウン,3
防水 ハイキングブーツ,キッチンスポンジ 10個入り,0
ワイヤレスイヤホン,ワイヤレスイヤホン ブルートゥース ノイズキャンセリング,3
ワイヤレスイヤホン,有線イヤホン 3.5mm,1
キッチンスポンジ,キッチンスポンジ 抗菌 10個入り,3
キッチンスポンジ,メンズ 防水 ハイキングブーツ 軽量 ブラウン,0
ステンレス 水筒,ステンレス 水筒 500ml 保温,3
ステンレス 水筒,プラスチック 水筒 子供用,2
`;

// Two queries in train, one in dev, one in test.
const CONFIG = `name: japanese
seed: 3
stages:
  data:
    uses: import
    with: { path: judgments.csv, labels: { scale: rating0to3 }, name: ja, split: { train: 0.5, dev: 0.25, test: 0.25 } }
  kg: { uses: kg, needs: [data], with: { min_type_count: 1, min_brand_count: 2 } }
  icl: { uses: icl, needs: [data, kg], with: { facts: 2, shots: 0, rules: none, maxTokens: 300, evidence: true } }
`;

function artifactOf(stage: string): string {
  const objects = path.join(dir, 'checkpoints', 'objects');
  const found = readdirSync(objects)
    .map((d) => ({ dir: path.join(objects, d), manifest: JSON.parse(readFileSync(path.join(objects, d, 'manifest.json'), 'utf8')) }))
    .find((a) => a.manifest.stage === stage);
  return found!.dir;
}

const splits = ['train', 'dev', 'test'] as const;
let prompts: PromptRecord[] = [];

beforeAll(async () => {
  writeFileSync(path.join(dir, 'judgments.csv'), CSV);
  writeFileSync(path.join(dir, 'pipeline.yaml'), CONFIG);
  execFileSync(process.execPath, [bin, 'run', 'pipeline.yaml'], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  for (const s of splits) prompts.push(...(await readJsonl<PromptRecord>(path.join(artifactOf('icl'), `${s}.jsonl`))));
}, 120_000);

describe('a Japanese catalog through import -> kg -> icl', () => {
  it('splits by query: each Japanese-only query is a group of its own', async () => {
    const bySplit = await Promise.all(splits.map((s) => readJsonl<RelevanceExample>(path.join(artifactOf('data'), `${s}.jsonl`))));
    // 4 queries at 0.5 / 0.25 / 0.25: 2, 1 and 1 queries of 2 pairs each.
    expect(bySplit.map((examples) => examples.length)).toEqual([4, 2, 2]);
    expect(bySplit.map((examples) => new Set(examples.map((e) => e.query)).size)).toEqual([2, 1, 1]);
  });

  it('states the words an item matches: an exact match in the title, none for a kitchen sponge', () => {
    const promptOf = (title: string) => {
      const record = prompts.find((p) => p.example.query === '防水 ハイキングブーツ' && p.example.item.title === title);
      return record!.messages.at(-1)!.content;
    };
    const boots = promptOf('メンズ 防水 ハイキングブーツ 軽量 ブラウン');
    const line = (prompt: string, name: string) => prompt.split('\n').find((l) => l.startsWith(`- ${name}: `))!.slice(name.length + 4).split(', ').sort();
    expect(line(boots, 'in title')).toEqual(['ハイキング', 'ブーツ', '防水'].sort());
    expect(boots).toContain('- missing: none');
    expect(boots).toContain('- lexical match: all');
    const sponge = promptOf('キッチンスポンジ 10個入り');
    expect(sponge).toContain('- in title: none');
    expect(line(sponge, 'missing')).toEqual(['ハイキング', 'ブーツ', '防水'].sort());
    expect(sponge).toContain('- lexical match: none');
  });
});
