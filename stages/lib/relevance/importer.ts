/**
 * Import of external relevance judgments (CSV, TSV, JSONL) into the dataset layout: a column
 * mapping, a label mapping from the dataset's scale into L1–L4 (docs/design.md §2), an encoding, and a
 * seeded split by query.
 *
 * Rows that cannot be read (a missing query or title, an unknown label, a wrong field count) are
 * skipped, counted and listed with their line numbers; with `strict: true` the first one fails the
 * import. A file that cannot be parsed at all (an unclosed quote, bytes that are not UTF-8 under
 * the default encoding) always fails, naming the line. Rows that label one query–item pair
 * differently are all kept, and reported as conflicts.
 */
import { readFileSync } from 'node:fs';
import { parse as parseCsv } from 'csv-parse/sync';
import iconv from 'iconv-lite';
import { z } from 'zod';
import type { Rng } from '../../../pipeline/api.ts';
import { splitByQuery, splitFractionsSchema } from './split.ts';
import { GRADES, type Grade, type Item, type RelevanceExample, type Split } from './types.ts';

const grade = z.enum(GRADES as [Grade, ...Grade[]]);

export const labelScaleSchema = z
  .discriminatedUnion('scale', [
    z.strictObject({ scale: z.literal('crowdflower').describe('Integers 1–4 -> L1–L4.') }),
    z.strictObject({ scale: z.literal('rating0to3').describe('Integers 0–3 -> L1–L4.') }),
    z.strictObject({ scale: z.literal('esci').describe('Amazon ESCI: E/S/C/I (or Exact/Substitute/Complement/Irrelevant) -> L4/L3/L2/L1.') }),
    z.strictObject({
      scale: z.literal('mean').describe('The mean of the label columns (several raters), cut by thresholds.'),
      thresholds: z
        .tuple([z.number(), z.number(), z.number()])
        .refine(([a, b, c]) => a < b && b < c, 'thresholds must increase')
        .describe('[t1, t2, t3]: mean < t1 -> L1, < t2 -> L2, < t3 -> L3, else L4.'),
    }),
    z.strictObject({ scale: z.literal('map').describe('An explicit table from label text to grade.'), map: z.record(z.string(), grade).describe('Label text -> L1..L4.') }),
  ])
  .describe('How the file\'s labels map into L1–L4.');
export type LabelScale = z.output<typeof labelScaleSchema>;

export const importParamsSchema = z.strictObject({
  path: z.string().min(1).describe("The CSV, TSV or JSONL file, relative to the config file's folder; its bytes are in the fingerprint."),
  format: z.enum(['auto', 'csv', 'tsv', 'jsonl']).default('auto').describe('auto: from the file extension (.csv, .tsv/.tab, .jsonl/.ndjson).'),
  encoding: z.string().default('utf8').describe('Text encoding of the file as iconv-lite names it (utf8, latin1, windows-1252, ...).'),
  columns: z
    .strictObject({
      query: z.string().default('query').describe('Column with the query text.'),
      title: z.string().default('title').describe('Column with the product title.'),
      description: z.string().optional().describe('Column with the product description (optional).'),
      category: z.string().optional().describe('Column with the category path, levels separated by ">" or "/" (optional).'),
      attributes: z.string().optional().describe('Column with attributes: a JSON object or "key=value; key=value" (optional).'),
      label: z.union([z.string(), z.array(z.string()).min(1)]).default('label').describe('Label column, or several (raters) for the mean scale.'),
    })
    .default({ query: 'query', title: 'title', label: 'label' })
    .describe('Which column holds what.'),
  labels: labelScaleSchema,
  name: z.string().default('import').describe('Source name recorded in each example\'s meta.source and id.'),
  strict: z.boolean().default(false).describe('Fail on the first unreadable row instead of skipping and reporting it.'),
  split: splitFractionsSchema,
  split_seed: z
    .number()
    .int()
    .min(0)
    .optional()
    .describe('Seed of the split by query (default: the pipeline seed). Fix it to train under other seeds on the same train/dev/test.'),
});
export type ImportParams = z.output<typeof importParamsSchema>;

export interface SkippedRow {
  /** 1-based line number in the file where the row starts. */
  line: number;
  reason: string;
}
/** One query–item pair that rows label differently (all its rows are kept). */
export interface LabelConflict {
  query: string;
  title: string;
  /** The rows' lines and labels, in file order. */
  lines: number[];
  labels: Grade[];
}
export interface ImportResult {
  splits: Record<Split, RelevanceExample[]>;
  rows: number;
  skipped: SkippedRow[];
  conflicts: LabelConflict[];
  grades: Record<Grade, number>;
}

type Row = { line: number; get(column: string): unknown; fields: number; expectedFields: number; invalid?: string; header?: string[] };

function formatOf(file: string, format: ImportParams['format']): 'csv' | 'tsv' | 'jsonl' {
  if (format !== 'auto') return format;
  if (/\.(tsv|tab)$/i.test(file)) return 'tsv';
  if (/\.(jsonl|ndjson)$/i.test(file)) return 'jsonl';
  if (/\.csv$/i.test(file)) return 'csv';
  throw new Error(`${file}: cannot tell the format from the extension; set format: csv, tsv or jsonl`);
}

/**
 * Decoding bytes that are not UTF-8 as UTF-8 turns each bad byte into U+FFFD without a word
 * ("caf\uFFFD cr\uFFFDme"), so under a UTF-8 encoding the bytes are checked first and the first bad
 * line is named, with the encodings that such files usually are.
 */
function checkUtf8(file: string, bytes: Buffer): void {
  const strict = new TextDecoder('utf-8', { fatal: true });
  try {
    strict.decode(bytes);
    return;
  } catch {
    // Find the line.
  }
  let start = 0;
  for (let line = 1; start <= bytes.length; line++) {
    const newline = bytes.indexOf(0x0a, start);
    const end = newline < 0 ? bytes.length : newline;
    const lineBytes = bytes.subarray(start, end);
    try {
      strict.decode(lineBytes);
    } catch {
      // Everything before the first U+FFFD decoded as written, so its UTF-8 length is the offset of the bad byte.
      const lenient = new TextDecoder('utf-8').decode(lineBytes);
      const column = Buffer.byteLength(lenient.slice(0, lenient.indexOf('\uFFFD')));
      throw new Error(
        `${file}:${line}: not valid UTF-8 (byte 0x${(lineBytes[column] ?? 0).toString(16).padStart(2, '0')} at column ${column + 1}); if the file is Latin-1 or Windows-1252, set encoding: latin1 or encoding: windows-1252`,
      );
    }
    start = end + 1;
  }
}

/**
 * A UTF-16 file (Excel's "Unicode text" export) read as UTF-8 or Latin-1 fails far from its cause
 * (bad bytes, or NULs in every column name), so it is recognised by its byte-order mark or, without
 * one, by NUL bytes in every other position of its start (ASCII text in UTF-16), and named.
 */
function checkNotUtf16(file: string, bytes: Buffer): void {
  let order: 'le' | 'be' | undefined;
  const bom = (bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff);
  if (bom) order = bytes[0] === 0xff ? 'le' : 'be';
  else {
    const head = bytes.subarray(0, Math.min(bytes.length, 512) & ~1);
    const nulsAt = (parity: number) => head.filter((b, i) => i % 2 === parity && b === 0).length;
    const pairs = head.length / 2;
    // Nearly every high byte NUL (a few non-ASCII characters aside): UTF-16 of mostly ASCII text.
    if (pairs >= 4 && nulsAt(1) >= 0.9 * pairs) order = 'le';
    else if (pairs >= 4 && nulsAt(0) >= 0.9 * pairs) order = 'be';
  }
  if (!order) return;
  throw new Error(
    `${file}: the file is UTF-16 (${order === 'le' ? 'little' : 'big'}-endian${bom ? ', with a byte-order mark' : ''}); set encoding: utf-16${order}, or convert it to UTF-8: iconv -f UTF-16${order.toUpperCase()} -t UTF-8 ${file} > converted.csv`,
  );
}

function readRows(file: string, params: ImportParams): Row[] {
  if (!iconv.encodingExists(params.encoding)) throw new Error(`encoding "${params.encoding}" is not known to iconv-lite (try utf8, latin1, windows-1252)`);
  const bytes = readFileSync(file);
  if (!/^utf-?16/i.test(params.encoding)) checkNotUtf16(file, bytes);
  if (/^utf-?8$/i.test(params.encoding)) checkUtf8(file, bytes);
  const text = iconv.decode(bytes, params.encoding).replace(/^\uFEFF/, '');
  const format = formatOf(file, params.format);
  if (format === 'jsonl') {
    const rows: Row[] = [];
    text.split(/\r?\n/).forEach((lineText, i) => {
      if (lineText.trim() === '') return;
      let record: Record<string, unknown>;
      try {
        const parsed: unknown = JSON.parse(lineText);
        record = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : { __invalid: 'not a JSON object' };
      } catch (error) {
        record = { __invalid: `invalid JSON: ${(error as Error).message}` };
      }
      rows.push({ line: i + 1, get: (c) => record[c], fields: 0, expectedFields: 0, invalid: record.__invalid as string | undefined });
    });
    return rows;
  }
  let records: { record: string[]; raw: string; info: { lines: number } }[];
  try {
    records = parseCsv(text, { delimiter: format === 'tsv' ? '\t' : ',', info: true, raw: true, relax_column_count: true, skip_empty_lines: true, relax_quotes: format === 'tsv' }) as never;
  } catch (error) {
    const e = error as Error & { lines?: number };
    throw new Error(`${file}${e.lines !== undefined ? `:${e.lines}` : ''}: cannot parse as ${format.toUpperCase()}: ${e.message}`);
  }
  const [header, ...body] = records;
  if (!header) return [];
  const columns = header.record.map((c) => c.trim());
  return body.map(({ record, raw, info }) => ({
    line: startLine(raw, info.lines),
    get: (c: string) => record[columns.indexOf(c)],
    fields: record.length,
    expectedFields: columns.length,
    header: columns,
  }));
}

/**
 * The line a CSV record starts on. csv-parse gives the line it ends on (`info.lines`) and its raw
 * text, which begins with the blank lines skipped before it: the record spans the line breaks
 * left once those and its own line break are cut off.
 */
function startLine(raw: string, endLine: number): number {
  const own = raw.replace(/^(\r?\n)+/, '').replace(/\r?\n$/, '');
  return endLine - (own.match(/\n/g)?.length ?? 0);
}

/** Labels as people write grades: digits, optionally a decimal point; no hex, exponent, sign or Infinity. */
const PLAIN_INTEGER = /^\d+(\.0*)?$/;
const PLAIN_DECIMAL = /^-?(\d+(\.\d*)?|\.\d+)$/;

export function parseLabel(values: unknown[], scale: LabelScale): Grade | string {
  const texts = values.map((v) => (v === undefined || v === null ? '' : String(v).trim()));
  const first = texts[0] ?? '';
  switch (scale.scale) {
    case 'crowdflower':
    case 'rating0to3': {
      const offset = scale.scale === 'crowdflower' ? 0 : 1;
      // Digits only ("2", or "2.0" as a float column writes it): Number() alone would take "0x2" and "1e0".
      const n = PLAIN_INTEGER.test(first) ? Number(first) : Number.NaN;
      const grade = `L${n + offset}`;
      return Number.isInteger(n) && GRADES.includes(grade as Grade) ? (grade as Grade) : `label "${first}" is not one of ${scale.scale === 'crowdflower' ? '1, 2, 3, 4' : '0, 1, 2, 3'}`;
    }
    case 'esci': {
      const letter = first.toUpperCase().slice(0, 1);
      const known: Record<string, Grade> = { E: 'L4', S: 'L3', C: 'L2', I: 'L1' };
      const valid = ['E', 'S', 'C', 'I', 'EXACT', 'SUBSTITUTE', 'COMPLEMENT', 'IRRELEVANT'].includes(first.toUpperCase());
      return valid ? (known[letter] as Grade) : `label "${first}" is not one of E, S, C, I`;
    }
    case 'mean': {
      const present = texts.filter((t) => t !== '');
      if (present.length === 0 || present.some((t) => !PLAIN_DECIMAL.test(t))) return `label values ${JSON.stringify(texts)} are not plain decimal numbers`;
      const numbers = present.map(Number);
      const mean = numbers.reduce((a, b) => a + b, 0) / numbers.length;
      const [t1, t2, t3] = scale.thresholds;
      return mean < t1 ? 'L1' : mean < t2 ? 'L2' : mean < t3 ? 'L3' : 'L4';
    }
    case 'map':
      return scale.map[first] ?? `label "${first}" is not in the map (${Object.keys(scale.map).join(', ')})`;
  }
}

function parseAttributes(value: unknown): Record<string, string> | string {
  if (value === undefined || value === null || value === '') return {};
  if (typeof value === 'object' && !Array.isArray(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, String(v)]));
  const text = String(value).trim();
  if (text.startsWith('{')) {
    try {
      return parseAttributes(JSON.parse(text));
    } catch {
      return 'attributes are not valid JSON';
    }
  }
  const attributes: Record<string, string> = {};
  for (const part of text.split(/[;|]/)) {
    if (part.trim() === '') continue;
    const m = /^([^=:]+)[=:](.*)$/.exec(part.trim());
    if (!m) return `attribute "${part.trim()}" is not key=value`;
    attributes[(m[1] as string).trim()] = (m[2] as string).trim();
  }
  return attributes;
}

function toExample(row: Row, params: ImportParams): RelevanceExample | string {
  if (row.invalid) return row.invalid;
  if (row.expectedFields > 0 && row.fields !== row.expectedFields) return `expected ${row.expectedFields} fields, found ${row.fields}`;
  const { columns } = params;
  const labelColumns = Array.isArray(columns.label) ? columns.label : [columns.label];
  if (row.header) {
    for (const column of [columns.query, columns.title, ...labelColumns]) if (!row.header.includes(column)) return `no column "${column}" in the header (${row.header.join(', ')})`;
  }
  const text = (column: string | undefined) => (column === undefined ? '' : String(row.get(column) ?? '').trim());
  const query = text(columns.query);
  const title = text(columns.title);
  if (query === '') return `empty ${columns.query}`;
  if (title === '') return `empty ${columns.title}`;
  const label = parseLabel(labelColumns.map((c) => row.get(c)), params.labels);
  if (!GRADES.includes(label as Grade)) return label;
  const attributes = parseAttributes(columns.attributes === undefined ? undefined : row.get(columns.attributes));
  if (typeof attributes === 'string') return attributes;
  const category = text(columns.category)
    .split(/\s*[>/]\s*/)
    .filter((s) => s !== '');
  const item: Item = { title, category, attributes };
  const description = text(columns.description);
  if (description !== '') item.description = description;
  return {
    id: `${params.name}-r${row.line}`,
    query,
    item,
    label: label as Grade,
    // Imported data has no generator intent: no capability tags, and one difficulty tier.
    meta: { capabilities: [], difficulty: 'medium', rules: [], source: params.name, line: row.line },
  };
}

export function importDataset(file: string, params: ImportParams, rng: Rng): ImportResult {
  const rows = readRows(file, params);
  const examples: RelevanceExample[] = [];
  const skipped: SkippedRow[] = [];
  for (const row of rows) {
    const result = toExample(row, params);
    if (typeof result === 'string') {
      if (params.strict) throw new Error(`${file}:${row.line}: ${result} (strict: true stops at the first unreadable row)`);
      skipped.push({ line: row.line, reason: result });
    } else examples.push(result);
  }
  if (examples.length === 0) throw new Error(`${file}: no readable rows (${skipped.length} skipped${skipped[0] ? `; first, line ${skipped[0].line}: ${skipped[0].reason}` : ''})`);
  const grades: Record<Grade, number> = { L1: 0, L2: 0, L3: 0, L4: 0 };
  for (const e of examples) grades[e.label]++;
  return { splits: splitByQuery(examples, params.split, rng), rows: rows.length, skipped, conflicts: labelConflicts(examples), grades };
}

/** Pairs of the same query and the same item (every field of it) that rows give different labels. */
export function labelConflicts(examples: readonly RelevanceExample[]): LabelConflict[] {
  const pairs = new Map<string, RelevanceExample[]>();
  for (const example of examples) {
    const key = JSON.stringify([example.query, example.item]);
    pairs.set(key, [...(pairs.get(key) ?? []), example]);
  }
  return [...pairs.values()]
    .filter((rows) => new Set(rows.map((row) => row.label)).size > 1)
    .map((rows) => ({
      query: (rows[0] as RelevanceExample).query,
      title: (rows[0] as RelevanceExample).item.title,
      lines: rows.map((row) => row.meta.line as number),
      labels: rows.map((row) => row.label),
    }));
}
