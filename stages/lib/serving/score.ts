/**
 * `pipeline score <config> --input pairs.jsonl --output out.jsonl`: offline labelling with the
 * trained judge (LORE's labelling copilot). Each input line is `{id?, query, item: {title, ...}}`;
 * each output line `{line, id, query, grade, probabilities, reasoning, format_ok, error?}`.
 *
 * Resumable: rows go to `<output>.partial` one batch at a time, and a rerun keeps the rows already
 * there (a line cut short by a kill is dropped and redone); the file is renamed to `<output>` only
 * when every row is scored, so nothing partial is ever published. Lines that cannot be read are
 * counted, listed by line number, and written to `<output>.skipped.jsonl`.
 */
import { createReadStream, existsSync, promises as fs } from 'node:fs';
import { createInterface } from 'node:readline';
import { progressText, type EngineConfig, type Inputs } from '../../../pipeline/api.ts';
import type { GradeReading, JudgeDefinition } from '../relevance/grade-pooling.ts';
import type { Item } from '../relevance/types.ts';
import { judgeSourcesFrom, type LlmJudgement, type PairToJudge } from './llm-judge.ts';

export interface ScoreOptions {
  input: string;
  output: string;
  /** The checkpoint stage to judge with (default: the pipeline's one checkpoint, or the last one built). */
  model?: string;
  batchSize: number;
  maxNewTokens: number;
  /** How a think-first judge's grade is read (default: the answer it wrote). */
  grade?: GradeReading;
  /** Pool with the learned lexical baseline at this weight (LlmJudgeOptions.lexicalPool). */
  lexicalPool?: number;
  /** Further checkpoint stages judging with `model` as one (JudgeSources.ensembleDirs; eval's `ensemble`). */
  ensemble?: string[];
  /** Ordinal cut points on the expected grade (LlmJudgeOptions.cutPoints). */
  cutPoints?: readonly number[];
  /**
   * Serve the judge an eval stage delivered (its metrics.json `delivered`): true for the config's
   * one eval stage, or the eval stage's name. Replaces model, ensemble, grade, lexicalPool and cutPoints.
   */
  delivered?: boolean | string;
}

/** The judge options that serve eval's delivered judge: its members, pool weight and decision rule. */
export function deliveredJudgeOptions(definition: JudgeDefinition): Pick<ScoreOptions, 'model' | 'ensemble' | 'grade' | 'lexicalPool' | 'cutPoints'> {
  const [first, ...rest] = definition.members;
  // The served ensemble pools its members at equal weights, as every candidate eval tries does.
  if (definition.memberWeights.some((w) => Math.abs(w - 1 / definition.members.length) > 1e-9)) throw new Error(`the delivered judge weighs its members unequally (${definition.memberWeights.join(', ')}); the served ensemble pools them equally`);
  return {
    // The lexical model alone still needs a checkpoint to open the judge with: the last one built, whose reading weighs 0.
    ...(first !== undefined ? { model: first } : {}),
    ...(rest.length > 0 ? { ensemble: rest } : {}),
    grade: definition.rule === 'answer' ? 'answer' : 'median',
    ...(definition.lexicalWeight > 0 ? { lexicalPool: definition.lexicalWeight } : {}),
    ...(definition.cutPoints ? { cutPoints: definition.cutPoints } : {}),
  };
}

/** The delivered judge's definition from an eval stage's metrics.json (`which`: true for the only eval stage, or its name). */
async function readDelivered(artifacts: Inputs, which: true | string): Promise<JudgeDefinition> {
  const evals = artifacts.many('eval');
  const chosen = which === true ? (evals.length === 1 ? evals[0] : undefined) : evals.find((e) => e.stage === which);
  if (!chosen) throw new Error(which === true ? `--delivered: ${evals.length === 0 ? 'no built eval stage' : `several eval stages (${evals.map((e) => e.stage).join(', ')}); name one: --delivered <stage>`}` : `--delivered ${which}: no built eval stage of that name`);
  artifacts.byStage(chosen.stage); // refused when the config no longer plans it
  const file = `${chosen.dir}/metrics.json`;
  const metrics = JSON.parse(await fs.readFile(file, 'utf8')) as { delivered?: { definition?: JudgeDefinition } };
  if (!metrics.delivered?.definition) throw new Error(`${file}: no delivered judge (built by an older eval, or without checkpoints); rerun the eval stage`);
  return metrics.delivered.definition;
}

export interface ScoreIo {
  out(text: string): void;
  err(text: string): void;
  /** Progress lines go here; a TTY redraws one line. */
  isTTY: boolean;
}

interface InputRow extends PairToJudge {
  line: number;
}

export interface SkippedLine {
  line: number;
  reason: string;
}

/** What is wrong with an input record (the key and the rule), or undefined. */
export function pairProblem(record: unknown): string | undefined {
  const r = record as { id?: unknown; query?: unknown; item?: Partial<Item> } | null;
  if (r === null || typeof r !== 'object' || Array.isArray(r)) return 'expected a JSON object';
  if (typeof r.query !== 'string' || r.query.trim() === '') return 'query: expected a non-empty string';
  if (r.item === null || typeof r.item !== 'object') return 'item: expected an object';
  if (typeof r.item.title !== 'string' || r.item.title.trim() === '') return 'item.title: expected a non-empty string';
  if (r.item.category !== undefined && !(Array.isArray(r.item.category) && r.item.category.every((c) => typeof c === 'string'))) return 'item.category: expected a list of strings';
  if (r.item.attributes !== undefined && (typeof r.item.attributes !== 'object' || r.item.attributes === null || Object.values(r.item.attributes).some((v) => typeof v !== 'string'))) {
    return 'item.attributes: expected an object of strings';
  }
  if (r.id !== undefined && typeof r.id !== 'string' && typeof r.id !== 'number') return 'id: expected a string or a number';
  return undefined;
}

/** A valid record as a pair (category and attributes may be left out). */
export function toPair(record: { id?: string | number; query: string; item: Partial<Item> & { title: string } }, fallbackId: string): PairToJudge {
  const item: Item = { ...record.item, title: record.item.title, category: record.item.category ?? [], attributes: record.item.attributes ?? {} };
  return { id: record.id !== undefined ? String(record.id) : fallbackId, query: record.query, item };
}

async function readInput(file: string): Promise<{ rows: InputRow[]; skipped: SkippedLine[] }> {
  if (!existsSync(file)) throw new Error(`${file}: no such file`);
  const rows: InputRow[] = [];
  const skipped: SkippedLine[] = [];
  let line = 0;
  for await (const text of createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity })) {
    line++;
    if (text.trim() === '') continue;
    let record: unknown;
    try {
      record = JSON.parse(text);
    } catch (error) {
      skipped.push({ line, reason: `invalid JSON: ${(error as Error).message}` });
      continue;
    }
    const problem = pairProblem(record);
    if (problem) skipped.push({ line, reason: problem });
    else rows.push({ ...toPair(record as Parameters<typeof toPair>[0], `line-${line}`), line });
  }
  return { rows, skipped };
}

/** Lines already scored in `<output>.partial`; a last line cut short by a kill is cut off the file. */
async function resume(partial: string): Promise<Set<number>> {
  const done = new Set<number>();
  if (!existsSync(partial)) return done;
  const text = await fs.readFile(partial, 'utf8');
  let kept = 0;
  for (const line of text.split('\n')) {
    if (kept + line.length >= text.length) break; // no newline after it: cut short
    try {
      done.add((JSON.parse(line) as { line: number }).line);
    } catch {
      break;
    }
    kept += line.length + 1;
  }
  if (kept < text.length) await fs.truncate(partial, kept);
  return done;
}

export function outputRow(row: InputRow, judgement: LlmJudgement): Record<string, unknown> {
  return {
    line: row.line,
    id: row.id,
    query: row.query,
    ...(row.item.id !== undefined ? { item_id: row.item.id } : {}),
    grade: judgement.grade,
    probabilities: judgement.probabilities,
    reasoning: judgement.reasoning,
    format_ok: judgement.formatOk,
    ...(judgement.error ? { error: judgement.error } : {}),
  };
}

/** Line numbers as ranges: 3, 7-9, 12. */
export function lineRanges(lines: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    let j = i;
    while (j + 1 < lines.length && (lines[j + 1] as number) === (lines[j] as number) + 1) j++;
    parts.push(i === j ? `${lines[i]}` : `${lines[i]}-${lines[j]}`);
    i = j;
  }
  return parts.join(', ');
}

export async function scorePairs(artifacts: Inputs & { engine: EngineConfig }, options: ScoreOptions, io: ScoreIo, signal?: AbortSignal): Promise<number> {
  const { openLlmJudge } = await import('./llm-judge.ts');
  if (options.delivered !== undefined && options.delivered !== false) {
    if (options.model !== undefined || options.ensemble !== undefined || options.lexicalPool !== undefined) throw new Error('--delivered serves the judge eval chose; leave out --model, --ensemble and --lexical-pool');
    const definition = await readDelivered(artifacts, options.delivered);
    options = { ...options, ...deliveredJudgeOptions(definition) };
    io.err(`score: the delivered judge: ${JSON.stringify(definition)}`);
  }
  const { rows, skipped } = await readInput(options.input);
  const partial = `${options.output}.partial`;
  const done = await resume(partial);
  const todo = rows.filter((r) => !done.has(r.line));
  const builtCheckpoint = (flag: string, stage: string) => {
    const found = artifacts.byStage(stage);
    if (!found || found.kind !== 'checkpoint') throw new Error(`${flag} ${stage}: no built checkpoint stage of that name`);
    return found;
  };
  // byStage: an artifact the config no longer plans is refused, naming the command that builds it.
  const last = artifacts.many('checkpoint').at(-1);
  const checkpoint = options.model !== undefined ? builtCheckpoint('--model', options.model) : last && artifacts.byStage(last.stage);
  if (!checkpoint) throw new Error('no built checkpoint to score with');
  const members = (options.ensemble ?? []).map((stage) => builtCheckpoint('--ensemble', stage));
  const judgedWith = [checkpoint, ...members].map((c) => c.stage).join(' + ');
  io.err(`score: ${rows.length} pairs from ${options.input} with ${judgedWith}; ${done.size} already in ${partial}, ${todo.length} to go${skipped.length ? `, ${skipped.length} unreadable lines` : ''}`);
  const log = { info: (m: string) => io.err(m), warn: (m: string) => io.err(`warning: ${m}`), debug: () => {} };
  const sources = { ...judgeSourcesFrom(artifacts, checkpoint.dir), ...(members.length > 0 ? { ensembleDirs: members.map((m) => m.dir) } : {}) };
  const judge = await openLlmJudge(sources, artifacts.engine, log, {
    maxNewTokens: options.maxNewTokens,
    batchSize: options.batchSize,
    grade: options.grade,
    lexicalPool: options.lexicalPool,
    ...(options.cutPoints ? { cutPoints: options.cutPoints } : {}),
  });
  const started = performance.now();
  try {
    for (let i = 0; i < todo.length; i += options.batchSize) {
      signal?.throwIfAborted();
      const batch = todo.slice(i, i + options.batchSize);
      const judged = await judge.judge(batch, signal);
      await fs.appendFile(partial, batch.map((row, k) => `${JSON.stringify(outputRow(row, judged[k] as LlmJudgement))}\n`).join(''));
      const n = Math.min(i + options.batchSize, todo.length);
      const rate = n / ((performance.now() - started) / 1000);
      const line = `score: ${progressText({ done: done.size + n, total: rows.length, unit: 'pairs' }, io.isTTY ? 24 : 0)}, ${rate.toFixed(1)} pairs/s`;
      if (io.isTTY) process.stderr.write(`\r${line}`);
      else io.err(line);
    }
    if (io.isTTY && todo.length > 0) process.stderr.write('\n');
  } finally {
    judge.close();
  }
  if (!existsSync(partial)) await fs.writeFile(partial, '');
  await fs.rename(partial, options.output);
  if (skipped.length > 0) {
    await fs.writeFile(`${options.output}.skipped.jsonl`, skipped.map((s) => `${JSON.stringify(s)}\n`).join(''));
    io.err(`score: ${skipped.length} unreadable lines skipped (lines ${lineRanges(skipped.map((s) => s.line))}); reasons in ${options.output}.skipped.jsonl`);
  }
  io.out(`${options.output}: ${rows.length} pairs scored, ${skipped.length} lines skipped`);
  return 0;
}
