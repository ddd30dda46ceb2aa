/**
 * bench/real.ts's onnxruntime side, in a process of its own so its peak RSS is its own: greedy
 * decoding of the given prompts on an exported checkpoint's onnx/model.onnx through the engine's
 * generation loop (the path sample, grpo, eval and score take), or with `"runner": "transformers"`
 * through transformers.js (local files only). Plain greedy on every side, repetition_penalty 1
 * (the folder's generation_config.json asks for 1.1), so the tokens compare with PyTorch's
 * reference loop, which applies none. Prints one JSON line: the
 * fastest round's seconds and each row's tokens. Argument: the JSON spec reference.py's generate
 * takes.
 */
import { basename, dirname } from 'node:path';
import { Rng } from '../pipeline/rng.ts';
import { readModelConfig } from '#engine/schema';
import { closeOnnxDecoder, generateOnnx, openOnnxDecoder } from '#engine/onnx';

const spec = JSON.parse(process.argv[2] as string) as { dir: string; prompts: number[][]; new_tokens: number; threads: number; rounds?: number; runner?: 'engine' | 'transformers' };
if (spec.runner === 'transformers') {
  const transformers = await import('@huggingface/transformers');
  transformers.env.allowRemoteModels = false;
  transformers.env.localModelPath = dirname(spec.dir);
  const model = await transformers.AutoModelForCausalLM.from_pretrained(basename(spec.dir), { local_files_only: true, dtype: 'fp32' });
  const ids = (rows: number[][]) => new transformers.Tensor('int64', BigInt64Array.from(rows.flat(), (v) => BigInt(v)), [rows.length, rows[0]!.length]);
  const started = performance.now();
  const output = (await model.generate({
    input_ids: ids(spec.prompts),
    attention_mask: ids(spec.prompts.map((p) => p.map(() => 1))),
    max_new_tokens: spec.new_tokens,
    min_new_tokens: spec.new_tokens,
    do_sample: false,
    repetition_penalty: 1,
  })) as InstanceType<typeof transformers.Tensor>;
  const seconds = (performance.now() - started) / 1000;
  const width = spec.prompts[0]!.length;
  console.log(JSON.stringify({ seconds, tokens: (output.tolist() as bigint[][]).map((row) => row.slice(width).map(Number)) }));
  await model.dispose();
  process.exit(0);
}
const config = readModelConfig(`${spec.dir}/config.json`);
const decoder = await openOnnxDecoder(`${spec.dir}/onnx/model.onnx`, config, { threads: spec.threads });
const times: number[] = [];
let tokens: number[][] = [];
for (let round = 0; round < (spec.rounds ?? 1); round++) {
  const started = performance.now();
  const generations = await generateOnnx(decoder, spec.prompts, { maxNewTokens: spec.new_tokens, temperature: 0, topK: 0, topP: 1, eosTokenIds: [], rng: new Rng(0) });
  times.push((performance.now() - started) / 1000);
  tokens = generations.map((g) => g.tokens);
}
await closeOnnxDecoder(decoder);
console.log(JSON.stringify({ seconds: Math.min(...times), tokens }));
