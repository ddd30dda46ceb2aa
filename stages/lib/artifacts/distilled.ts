/**
 * The 'distilled' artifact (the distill stage writes it; precompute and the server read it): the
 * distilled model (`serving/deepbow.ts` owns its file, DISTILLED_MODEL_FILE, and its check) and
 * `dev.jsonl`, the dev pairs judged by both the LLM and the distilled model, from which precompute
 * chooses the routing threshold.
 */
import path from 'node:path';
import { readJsonl } from '../io/jsonl.ts';
import type { Grade } from '../relevance/types.ts';

export const DISTILLED_DEV_FILE = 'dev.jsonl';

/** One dev pair: the LLM judge's grade and the distilled model's, beside the gold one. */
export interface DevJudgement {
  id: string;
  query: string;
  gold: Grade;
  llm: { grade: Grade | null; probabilities: Record<Grade, number> | null };
  distilled: { grade: Grade; probabilities: Record<Grade, number>; confidence: number };
}

/** The dev judgements of a distilled artifact. */
export function readDistilledDev(distilledDir: string): Promise<DevJudgement[]> {
  return readJsonl<DevJudgement>(path.join(distilledDir, DISTILLED_DEV_FILE));
}
