/**
 * The 'dataset' artifact layout every relevance stage shares:
 *   train.jsonl, dev.jsonl, test.jsonl   RelevanceExample records (relevance/types.ts)
 *   stats.json                           counts by split, grade, capability, ... (producer-specific)
 * The world stage adds catalog.jsonl (every generated Item) and knowledge.json (the resolved
 * knowledge bundle, rules included) and rules.json (the rules alone); kg reads them when present.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { forEachJsonl, writeJsonl } from '../io/jsonl.ts';
import { GRADES, type RelevanceExample, type Split } from '../relevance/types.ts';

export const SPLITS: readonly Split[] = ['train', 'dev', 'test'];

export async function writeSplits(dir: string, splits: Record<Split, readonly RelevanceExample[]>): Promise<void> {
  for (const split of SPLITS) await writeJsonl(path.join(dir, `${split}.jsonl`), splits[split]);
}

/** Reads and checks one split; a record without query, item title or a valid label is an error naming its line. */
export async function readSplit(dir: string, split: Split): Promise<RelevanceExample[]> {
  const file = path.join(dir, `${split}.jsonl`);
  if (!existsSync(file)) throw new Error(`${dir} is not a dataset artifact: ${split}.jsonl is missing`);
  const examples: RelevanceExample[] = [];
  await forEachJsonl<RelevanceExample>(file, (record, line) => {
    if (typeof record?.query !== 'string' || typeof record.item?.title !== 'string' || !GRADES.includes(record.label)) {
      throw new Error(`${file}:${line}: not a relevance example (needs query, item.title and a label L1–L4)`);
    }
    examples.push(record);
  });
  return examples;
}

export async function readSplits(dir: string): Promise<Record<Split, RelevanceExample[]>> {
  return { train: await readSplit(dir, 'train'), dev: await readSplit(dir, 'dev'), test: await readSplit(dir, 'test') };
}
