/**
 * Turns an SFT set into token ids for a trainer outside Node, with the tokenizer and chat template
 * of the model it starts from: the same ids the tfjs `sft` stage trains on (prompt tokens masked
 * out of the loss). Writes one JSON line per example: {"ids": [...], "loss_mask": [...]}.
 *
 *   npx tsx examples/byo-trainer/tokenize.ts <sft-set dir> <model dir> <out.jsonl>
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SftRecord } from '../../stages/lib/artifacts/sft-set.ts';
import { loadTokenizer } from '#engine/tokenizer';
import { completionIds, promptIds } from '../../stages/lib/judge/model.ts';
import { readCompletionFormat } from '../../stages/lib/artifacts/checkpoint.ts';
import { readJsonl } from '../../stages/lib/io/jsonl.ts';

const [setDir, modelDir, outFile] = process.argv.slice(2);
if (!setDir || !modelDir || !outFile) {
  console.error('usage: tokenize.ts <sft-set dir> <model dir> <out.jsonl>');
  process.exit(2);
}
const tokenizer = await loadTokenizer(modelDir);
const format = await readCompletionFormat(modelDir);
const records = await readJsonl<SftRecord>(join(setDir, 'train.jsonl'));
const lines = records.map((r) => {
  const prompt = promptIds(tokenizer, format, r.messages);
  const completion = completionIds(tokenizer, r.completion);
  return JSON.stringify({ ids: [...prompt, ...completion], loss_mask: [...prompt.map(() => 0), ...completion.map(() => 1)] });
});
writeFileSync(outFile, `${lines.join('\n')}\n`);
console.log(`tokenized ${records.length} examples from ${setDir} with the tokenizer of ${modelDir}`);
