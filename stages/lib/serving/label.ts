/**
 * Labelling many pairs with the LLM judge inside a stage: a batch at a time, appended to a file in
 * the stage's work folder, so a stopped stage resumes where it was (distill's pool, precompute's
 * head queries).
 */
import { existsSync, promises as fs } from 'node:fs';
import type { StageContext } from '../../../pipeline/api.ts';
import type { GradeReading } from '../relevance/grade-pooling.ts';
import type { Grade } from '../relevance/types.ts';
import type { LlmJudgement, PairToJudge } from './llm-judge.ts';

export interface LabelledPair extends LlmJudgement {
  id: string;
}

export async function labelResumably(
  ctx: StageContext<unknown>,
  pairs: readonly PairToJudge[],
  options: { file: string; unit: string; batchSize: number; maxNewTokens: number; grade?: GradeReading; lexicalPool?: number; ensemble?: readonly string[]; timing?: LabellingTiming },
): Promise<Map<string, LabelledPair>> {
  const { openLlmJudge, ensembleSourcesFrom } = await import('./llm-judge.ts');
  const labelled = new Map<string, LabelledPair>();
  // A line cut short by a kill fails to parse: the file is rewritten without it.
  if (existsSync(options.file)) {
    const lines = (await fs.readFile(options.file, 'utf8')).split('\n');
    const good: string[] = [];
    for (const line of lines) {
      try {
        const row = JSON.parse(line) as LabelledPair;
        labelled.set(row.id, row);
        good.push(line);
      } catch {
        break;
      }
    }
    await fs.writeFile(options.file, good.map((l) => `${l}\n`).join(''));
  }
  const wanted = new Set(pairs.map((p) => p.id));
  const todo = pairs.filter((p) => !labelled.has(p.id));
  const resumed = [...labelled.keys()].filter((id) => wanted.has(id)).length;
  if (resumed > 0) ctx.log.info(`${options.unit}: resuming with ${resumed} pairs labelled, ${todo.length} to go`);
  if (todo.length === 0) return labelled;
  const judge = await openLlmJudge(ensembleSourcesFrom(ctx.inputs, options.ensemble), ctx.engine, ctx.log, options);
  try {
    for (let i = 0; i < todo.length; i += options.batchSize) {
      const batch = todo.slice(i, i + options.batchSize);
      const started = performance.now();
      const judged = await judge.judge(batch, ctx.signal);
      if (options.timing) {
        options.timing.batches++;
        options.timing.seconds += (performance.now() - started) / 1000;
      }
      const rows = batch.map((pair, k) => ({ id: pair.id, ...(judged[k] as LlmJudgement) }));
      await fs.appendFile(options.file, rows.map((r) => `${JSON.stringify(r)}\n`).join(''));
      for (const r of rows) labelled.set(r.id, r);
      ctx.progress.update(resumed + i + batch.length, pairs.length, `${options.unit} pairs`);
    }
  } finally {
    judge.close();
  }
  return labelled;
}

/** Filled in by labelResumably: the batches it decoded (every member of an ensemble included) and the seconds they took. */
export interface LabellingTiming {
  batches: number;
  seconds: number;
}

export function oneHot(grade: Grade): Record<Grade, number> {
  return { L1: 0, L2: 0, L3: 0, L4: 0, [grade]: 1 };
}
