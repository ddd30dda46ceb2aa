/**
 * The 'sft-set' artifact (the cot stage writes it; sft, pretrain and dpo read it): `<split>.jsonl`
 * of SftRecord for train and dev, beside cot's own logs (`rejected-<split>.jsonl`, `rounds.jsonl`).
 */
import { join } from 'node:path';
import { readJsonl } from '../io/jsonl.ts';
import type { ChatMessage } from '../relevance/prompts.ts';
import type { RelevanceExample } from '../relevance/types.ts';

/** A line of the set: a prompt and the verified completion SFT trains on. */
export interface SftRecord {
  id: string;
  messages: ChatMessage[];
  completion: string;
  example: RelevanceExample;
  /** The cot round that wrote the completion. */
  round: string;
}

/** The file of one split in an sft-set artifact. */
export function sftSetFile(dir: string, split: string): string {
  return join(dir, `${split}.jsonl`);
}

/** The records of one split. */
export function readSftSet(dir: string, split: string): Promise<SftRecord[]> {
  return readJsonl<SftRecord>(sftSetFile(dir, split));
}
