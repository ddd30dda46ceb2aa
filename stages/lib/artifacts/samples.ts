/**
 * The 'samples' artifact (the sample stage writes it; dpo reads it): `<split>.jsonl` of
 * SampledPrompt, each prompt record with its N sampled completions and their verdicts. Reading
 * checks each line, so a bad one is an error naming the file, line and key.
 */
import { join } from 'node:path';
import { readChecked } from '../io/jsonl.ts';
import type { PromptRecord } from '../relevance/prompts.ts';
import type { Grade } from '../relevance/types.ts';
import { promptRecordProblem } from './prompts.ts';

/** The file of one split in a samples artifact. */
export function samplesFile(samplesDir: string, split: string): string {
  return join(samplesDir, `${split}.jsonl`);
}

/** One sampled completion and its verdicts. */
export interface SampleRecord {
  text: string;
  label: Grade | null;
  format_ok: boolean;
  steps_verified: number;
  /** Format parses and the grade is the gold one. */
  correct: boolean;
  /** Correct and every reasoning step verifies. */
  accepted: boolean;
  tokens: number;
  finish_reason: string;
}

/** A line of `<split>.jsonl`: the prompt record plus its samples. */
export interface SampledPrompt extends PromptRecord {
  samples: SampleRecord[];
  correct: number;
  pass_rate: number;
}

/** Reads `<split>.jsonl` of a samples artifact (the sample stage's output). */
export function readSampledPrompts(samplesDir: string, split: string): Promise<SampledPrompt[]> {
  return readChecked<SampledPrompt>(samplesFile(samplesDir, split), (record) => {
    const problem = promptRecordProblem(record);
    if (problem) return problem;
    if (!Array.isArray(record.samples)) return 'samples: expected a list';
    const bad = record.samples.findIndex((s) => typeof s?.text !== 'string' || typeof s.correct !== 'boolean');
    return bad >= 0 ? `samples.${bad}: expected { text: string, correct: boolean, ... }` : undefined;
  });
}
