/**
 * The 'prompts' artifact (the icl stage writes it; sft, sample, dpo, grpo and eval read it):
 * `<split>.jsonl` of PromptRecord (relevance/prompts.ts builds them) for train, dev and test, and
 * stats.json. Reading checks each record, so a bad line is an error naming the file, line and key.
 */
import { join } from 'node:path';
import { readChecked } from '../io/jsonl.ts';
import type { PromptRecord } from '../relevance/prompts.ts';
import { GRADES } from '../relevance/types.ts';

/** The file of one split in a prompts artifact. */
export function promptsFile(promptsDir: string, split: string): string {
  return join(promptsDir, `${split}.jsonl`);
}

/** What is wrong with a prompt record for the RL stages (the key and the rule), or undefined. */
export function promptRecordProblem(record: PromptRecord): string | undefined {
  if (typeof record?.id !== 'string') return 'id: expected a string';
  if (!Array.isArray(record.messages) || record.messages.length === 0) return 'messages: expected a non-empty list';
  if (typeof record.example?.query !== 'string') return 'example.query: expected a string';
  if (!GRADES.includes(record.example.label)) return `example.label: expected one of ${GRADES.join(', ')}, got ${JSON.stringify(record.example.label)}`;
  if (!Array.isArray(record.example.meta?.rules)) return 'example.meta.rules: expected a list';
  return undefined;
}

/** Reads `<split>.jsonl` of a prompts artifact. */
export function readPromptRecords(promptsDir: string, split: string): Promise<PromptRecord[]> {
  return readChecked<PromptRecord>(promptsFile(promptsDir, split), promptRecordProblem);
}
