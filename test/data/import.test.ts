import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import iconv from 'iconv-lite';
import { afterAll, describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import importStage from '../../stages/import/index.ts';
import { readSplits } from '../../stages/lib/artifacts/dataset.ts';
import { importDataset, importParamsSchema, parseLabel } from '../../stages/lib/relevance/importer.ts';
import { normalise } from '../../stages/lib/relevance/text.ts';
import { testContext } from './context.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'import-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function fixture(name: string, content: string | Buffer): string {
  const file = path.join(dir, name);
  writeFileSync(file, content);
  return file;
}

const params = (overrides: Record<string, unknown>) => importParamsSchema.parse({ path: 'x', labels: { scale: 'rating0to3' }, ...overrides });

// Lines: 1 header, 2 ok, 3 empty title, 4 label 7, 5 two fields, 6-7 one row with a quoted newline, 8 ok.
const CSV = ['query,title,label', 'red sofa,Ikea Red Sofa,3', 'blue sofa,,2', 'green sofa,Ikea Sofa,7', 'grey sofa,1', 'sofa,"Ikea Sofa', 'Three Seater",1', 'couch,Ikea Couch,0', ''].join('\n');

describe('import', () => {
  it('skips unreadable rows and names their line numbers', () => {
    const result = importDataset(fixture('bad.csv', CSV), params({}), new Rng(1));
    expect(result.rows).toBe(6);
    expect(result.skipped).toEqual([
      { line: 3, reason: 'empty title' },
      { line: 4, reason: 'label "7" is not one of 0, 1, 2, 3' },
      { line: 5, reason: 'expected 3 fields, found 2' },
    ]);
    const all = [...result.splits.train, ...result.splits.dev, ...result.splits.test];
    expect(all.map((e) => e.meta.line).sort()).toEqual([2, 6, 8]);
    // The quoted newline is kept inside the title of the row that starts on line 6.
    expect(all.find((e) => e.meta.line === 6)?.item.title).toBe('Ikea Sofa\nThree Seater');
    expect(result.grades).toEqual({ L1: 1, L2: 1, L3: 0, L4: 1 });
  });

  it('fails on the first unreadable row with strict: true', () => {
    expect(() => importDataset(fixture('bad2.csv', CSV), params({ strict: true }), new Rng(1))).toThrow(/bad2\.csv:3: empty title/);
  });

  it('maps the label scales of docs/design.md §2', () => {
    expect(['1', '2', '3', '4'].map((l) => parseLabel([l], { scale: 'crowdflower' }))).toEqual(['L1', 'L2', 'L3', 'L4']);
    expect(['0', '1', '2', '3'].map((l) => parseLabel([l], { scale: 'rating0to3' }))).toEqual(['L1', 'L2', 'L3', 'L4']);
    expect(['E', 'S', 'C', 'I', 'exact'].map((l) => parseLabel([l], { scale: 'esci' }))).toEqual(['L4', 'L3', 'L2', 'L1', 'L4']);
    // Mean of raters (2+3+3)/3 = 2.67 >= 2.5 -> L4; (0+1+1)/3 = 0.67 in [0.5, 1.5) -> L2.
    const mean = { scale: 'mean' as const, thresholds: [0.5, 1.5, 2.5] as [number, number, number] };
    expect(parseLabel(['2', '3', '3'], mean)).toBe('L4');
    expect(parseLabel(['0', '1', '1'], mean)).toBe('L2');
    expect(parseLabel(['good'], { scale: 'map', map: { good: 'L4' } })).toBe('L4');
    expect(parseLabel(['5'], { scale: 'crowdflower' })).toBe('label "5" is not one of 1, 2, 3, 4');
  });

  it('takes only plain numbers as grades: no hex, exponent or Infinity', () => {
    // Number() reads "0x2" as 2 and "1e0" as 1; a grade column holding them is corrupt, not graded.
    expect(parseLabel(['0x2'], { scale: 'crowdflower' })).toBe('label "0x2" is not one of 1, 2, 3, 4');
    expect(parseLabel(['1e0'], { scale: 'rating0to3' })).toBe('label "1e0" is not one of 0, 1, 2, 3');
    // A float column writes "2.0": still grade 2.
    expect(parseLabel(['2.0'], { scale: 'crowdflower' })).toBe('L2');
    const mean = { scale: 'mean' as const, thresholds: [0.5, 1.5, 2.5] as [number, number, number] };
    expect(parseLabel(['2', '0x3'], mean)).toBe('label values ["2","0x3"] are not plain decimal numbers');
    expect(parseLabel(['1e0', 'Infinity'], mean)).toBe('label values ["1e0","Infinity"] are not plain decimal numbers');
    // (1.5 + .5) / 2 = 1.0, in [0.5, 1.5): L2.
    expect(parseLabel(['1.5', '.5'], mean)).toBe('L2');
  });

  it('names a UTF-16 file as UTF-16, with the encoding to set and how to convert it', () => {
    const csv = 'query,title,label\nmug,Mug,3\n';
    const withBom = fixture('utf16-bom.csv', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(csv, 'utf16le')]));
    expect(() => importDataset(withBom, params({}), new Rng(1))).toThrow(
      `${withBom}: the file is UTF-16 (little-endian, with a byte-order mark); set encoding: utf-16le, or convert it to UTF-8: iconv -f UTF-16LE -t UTF-8 ${withBom} > converted.csv`,
    );
    // Without a mark: ASCII in UTF-16 has a NUL in every other byte (valid UTF-8, but not the text).
    const bigEndian = fixture('utf16-be.csv', iconv.encode(csv, 'utf-16be'));
    expect(() => importDataset(bigEndian, params({ encoding: 'latin1' }), new Rng(1))).toThrow(`${bigEndian}: the file is UTF-16 (big-endian); set encoding: utf-16be`);
    // Read with the encoding it names, the file imports.
    const read = importDataset(withBom, params({ encoding: 'utf-16le', split: { train: 1, dev: 0, test: 0 } }), new Rng(1));
    expect(read.splits.train.map((e) => e.query)).toEqual(['mug']);
  });

  it('reads latin-1 TSV and JSONL with attributes', () => {
    const tsv = fixture('latin1.tsv', iconv.encode('q\tt\tesci\tattrs\ncafé crème mug\tMug für Café\tE\tcolour=white; material=ceramic\n', 'latin1'));
    const mapping = { columns: { query: 'q', title: 't', label: 'esci', attributes: 'attrs' }, labels: { scale: 'esci' }, split: { train: 1, dev: 0, test: 0 } };
    const [example] = importDataset(tsv, params({ ...mapping, encoding: 'latin1' }), new Rng(1)).splits.train;
    expect(example).toMatchObject({ query: 'café crème mug', item: { title: 'Mug für Café', attributes: { colour: 'white', material: 'ceramic' } }, label: 'L4' });

    const jsonl = fixture('pairs.jsonl', '{"query":"tent","title":"Coleman Tent","label":"3","attributes":{"capacity":"2 person"}}\nnot json\n');
    const result = importDataset(jsonl, params({ columns: { attributes: 'attributes' }, split: { train: 1, dev: 0, test: 0 } }), new Rng(1));
    expect(result.splits.train[0]?.item.attributes).toEqual({ capacity: '2 person' });
    expect(result.skipped).toEqual([{ line: 2, reason: expect.stringMatching(/^invalid JSON/) }]);
  });

  it('refuses Latin-1 bytes read as UTF-8, naming the first bad line and the encoding to set', () => {
    // Line 2 is ASCII; line 3 holds "é" as the single Latin-1 byte 0xE9, which UTF-8 cannot start a character with.
    const file = fixture('latin1.csv', iconv.encode('query,title,label\nmug,Mug,3\ncafé crème,Tasse,2\n', 'latin1'));
    expect(() => importDataset(file, params({}), new Rng(1))).toThrow(
      `${file}:3: not valid UTF-8 (byte 0xe9 at column 4); if the file is Latin-1 or Windows-1252, set encoding: latin1 or encoding: windows-1252`,
    );
  });

  it('counts lines across blank lines', () => {
    // Lines: 1 header, 2 blank, 3 ok, 4 blank, 5 empty title, 6 blank, 7-8 one row with a quoted newline.
    const file = fixture('blank-lines.csv', 'query,title,label\n\nred sofa,Sofa,3\n\nblue sofa,,2\n\nsofa,"Ikea\nSofa",1\n');
    const result = importDataset(file, params({ split: { train: 1, dev: 0, test: 0 } }), new Rng(1));
    expect(result.skipped).toEqual([{ line: 5, reason: 'empty title' }]);
    expect(result.splits.train.map((e) => e.meta.line).sort()).toEqual([3, 7]);
  });

  it('counts and reports rows that give one query–item pair different labels', async () => {
    // Lines 2 and 4 agree (L4), line 3 says 1 (L2): one conflicting pair over three rows; "chair" has one row.
    const file = fixture('conflicts.csv', 'query,title,label\nsofa,Ikea Sofa,3\nsofa,Ikea Sofa,1\nsofa,Ikea Sofa,3\nchair,Stool,2\nchair,Stool,2\n');
    const result = importDataset(file, params({}), new Rng(1));
    expect(result.conflicts).toEqual([{ query: 'sofa', title: 'Ikea Sofa', lines: [2, 3, 4], labels: ['L4', 'L2', 'L4'] }]);
    expect(result.skipped).toEqual([]);

    // As a stage: counted in the metrics, named in a warning, listed in conflicts.jsonl.
    const ctx = testContext(importStage, { params: { path: 'conflicts.csv', labels: { scale: 'rating0to3' } }, configDir: dir });
    const outcome = await importStage.run(ctx as never);
    expect(outcome?.metrics).toMatchObject({ rows: 5, examples: 5, conflicting_pairs: 1, conflicting_rows: 3 });
    expect(ctx.logs).toContain(
      'warn: 1 query–item pairs are labelled differently by different rows (3 rows, all kept); first: "sofa" / "Ikea Sofa" on lines 2, 3, 4 as L4, L2, L4; all in conflicts.jsonl',
    );
    expect(readFileSync(path.join(ctx.outDir, 'conflicts.jsonl'), 'utf8').trim().split('\n')).toHaveLength(1);
  });

  it('runs as a stage: writes the splits, the skipped rows, and declares the file for the fingerprint', async () => {
    fixture('stage.csv', CSV);
    const ctx = testContext(importStage, { params: { path: 'stage.csv', labels: { scale: 'rating0to3' } }, configDir: dir });
    expect(importStage.userFiles?.(ctx.params as never, dir)).toEqual(['stage.csv']);
    const outcome = await importStage.run(ctx as never);
    expect(outcome?.metrics).toMatchObject({ rows: 6, examples: 3, skipped: 3 });
    expect(readFileSync(path.join(ctx.outDir, 'skipped.jsonl'), 'utf8').trim().split('\n')).toHaveLength(3);
    expect(ctx.logs.some((l) => l.startsWith('warn: skipped 3 of 6 rows; lines 3 (empty title)'))).toBe(true);
    const splits = await readSplits(ctx.outDir);
    expect(splits.train.length + splits.dev.length + splits.test.length).toBe(3);
  });

  it('splits by split_seed whatever the pipeline seed, and by the pipeline seed without it', async () => {
    // Forty queries, one row each: a split that ignored its seed would be the same under every seed.
    fixture('seeds.csv', ['query,title,label', ...Array.from({ length: 40 }, (_, i) => `query ${i},Item ${i},${i % 4}`)].join('\n'));
    const queriesBySplit = async (params: Record<string, unknown>, seed: number) => {
      const ctx = testContext(importStage, { params: { path: 'seeds.csv', labels: { scale: 'rating0to3' }, ...params }, configDir: dir, seed });
      await importStage.run(ctx as never);
      const splits = await readSplits(ctx.outDir);
      return Object.fromEntries(Object.entries(splits).map(([split, list]) => [split, list.map((e) => e.query).sort()]));
    };
    const bySeed13 = await queriesBySplit({}, 13);
    expect(await queriesBySplit({}, 14)).not.toEqual(bySeed13);
    // split_seed 13 is the stream seed 13 gives the import stage: the same split under seed 14.
    expect(await queriesBySplit({ split_seed: 13 }, 14)).toEqual(bySeed13);
    expect(await queriesBySplit({ split_seed: 13 }, 13)).toEqual(bySeed13);
    expect(() => importParamsSchema.parse({ path: 'x', labels: { scale: 'rating0to3' }, split_seed: -1 })).toThrow();
  });
});

const chorus = path.join(import.meta.dirname, '..', '..', '..', 'shared', 'data', 'chorus', 'Broad_Query_Set_individual_ratings.csv');
describe.skipIf(!existsSync(chorus))('import of the Chorus judgments (../shared/data/chorus)', () => {
  it('reads all 3,188 rows with the 0–3 scale and splits by query', () => {
    const p = params({ columns: { query: 'query', title: 'name', description: 'description', label: 'final_rating' }, name: 'chorus' });
    const result = importDataset(chorus, p, new Rng(13));
    expect(result.skipped).toEqual([]);
    // README: final_rating 0 = 1,471; 1 = 198; 2 = 93; 3 = 1,426 -> L1..L4.
    expect(result.grades).toEqual({ L1: 1471, L2: 198, L3: 93, L4: 1426 });
    const queries = (split: 'train' | 'dev' | 'test') => new Set(result.splits[split].map((e) => normalise(e.query)));
    for (const q of queries('test')) expect(queries('train').has(q) || queries('dev').has(q)).toBe(false);
  });

  it('takes the mean of the three raters with thresholds', () => {
    const p = params({ columns: { query: 'query', title: 'name', label: ['agent_1_rating', 'agent_2_rating', 'agent_3_rating'] }, labels: { scale: 'mean', thresholds: [0.5, 1.5, 2.5] } });
    const result = importDataset(chorus, p, new Rng(13));
    expect(result.rows).toBe(3188);
    expect(result.grades.L1 + result.grades.L2 + result.grades.L3 + result.grades.L4 + result.skipped.length).toBe(3188);
  });
});
