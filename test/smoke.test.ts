/**
 * `configs/smoke.yaml` end to end through the CLI, as CI runs it: world -> kg -> icl -> cot -> sft
 * builds, and the tiny model's greedy completions on every dev prompt parse (format validity at least
 * 0.95, the bar). Two data-parallel ranks are pinned so the run, and so the figure, is the
 * same on every machine (`auto` would follow the core count). How long it takes is measured by
 * `npm run bench:smoke`, not here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Rng } from '../pipeline/rng.ts';
import { cli, tempDir } from './pipeline/cli-helpers.ts';

const root = path.resolve(import.meta.dirname, '..');
const { dir, remove } = tempDir('smoke-');
afterAll(remove);

describe('configs/smoke.yaml', () => {
  it('builds its five stages and the SFT model writes parseable completions for 95% of dev prompts', async () => {
    const store = path.join(dir, 'store');
    const result = await cli(root, ['run', 'configs/smoke.yaml', '--store', store, '--set', 'engine.data_parallel=2']);
    expect(result.stdout + result.stderr).toMatch(/succeeded: 5 built, 0 cached, 0 failed/);

    const objects = path.join(store, 'objects');
    const manifests = readdirSync(objects).map((d) => JSON.parse(readFileSync(path.join(objects, d, 'manifest.json'), 'utf8')));
    const sft = manifests.find((m) => m.stage === 'sft');
    const icl = manifests.find((m) => m.stage === 'icl');
    const devPrompts = readFileSync(path.join(objects, icl.fingerprint, 'dev.jsonl'), 'utf8').trim().split('\n').length;
    // The probe is every dev prompt of the smoke world, not a sample of them.
    expect(sft.metrics.dev_probe_prompts).toBe(devPrompts);
    expect(sft.metrics.data_parallel_ranks).toBe(2);
    expect(sft.metrics.dev_format_valid).toBeGreaterThanOrEqual(0.95);
  }, 900_000);

  it('exports the SFT checkpoint to ONNX: onnxruntime, tfjs and transformers.js decode the same dev completions', async () => {
    const store = path.join(dir, 'store');
    const out = path.join(dir, 'export');
    // The same --set as the run: export takes the artifact the config plans now, and data_parallel is in sft's fingerprint.
    const result = await cli(root, ['export', 'configs/smoke.yaml', 'sft', '--store', store, '--out', out, '--set', 'engine.data_parallel=2']);
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(/^sft \([0-9a-f]+\) -> .*onnx\/model\.onnx in /);
    const dev = await firstDevPrompts(store, 12);
    const viaOnnx = await completionsVia(out, 'onnxruntime', dev);
    const viaTfjs = await completionsVia(out, 'tfjs', dev);
    expect(viaOnnx.map((c) => c.text)).toEqual(viaTfjs.map((c) => c.text));
    expect(viaOnnx.filter((c) => c.text.includes('</answer>')).length).toBeGreaterThanOrEqual(10); // real completions, not empty ones

    // transformers.js, local files only: greedy from the same prompt ids, as many new tokens as the engine took.
    const transformers = await import('@huggingface/transformers');
    transformers.env.allowRemoteModels = false;
    transformers.env.localModelPath = path.dirname(out);
    const model = await transformers.AutoModelForCausalLM.from_pretrained(path.basename(out), { local_files_only: true, dtype: 'fp32' });
    const tokenizer = await transformers.AutoTokenizer.from_pretrained(path.basename(out), { local_files_only: true });
    for (const completion of viaOnnx.slice(0, 4)) {
      const ids = completion.promptTokens.map((id) => BigInt(id));
      const inputIds = new transformers.Tensor('int64', BigInt64Array.from(ids), [1, ids.length]);
      const attentionMask = new transformers.Tensor('int64', BigInt64Array.from(ids.map(() => 1n)), [1, ids.length]);
      const output = (await model.generate({ input_ids: inputIds, attention_mask: attentionMask, max_new_tokens: completion.tokens.length, do_sample: false })) as InstanceType<typeof transformers.Tensor>;
      const generated = (output.tolist() as bigint[][])[0]!.slice(ids.length).map(Number);
      expect(generated).toEqual(completion.tokens);
      expect(tokenizer.decode(generated, { skip_special_tokens: true })).toBe(completion.text);
    }
    await model.dispose();
  }, 120_000);
});

/** The first `count` dev prompts of the smoke run's icl artifact. */
async function firstDevPrompts(store: string, count: number): Promise<Array<{ id: string; messages: Array<{ role: 'system' | 'user' | 'assistant'; content: string }> }>> {
  const objects = path.join(store, 'objects');
  const icl = readdirSync(objects).map((d) => JSON.parse(readFileSync(path.join(objects, d, 'manifest.json'), 'utf8'))).find((m) => m.stage === 'icl');
  return readFileSync(path.join(objects, icl.fingerprint, 'dev.jsonl'), 'utf8').trim().split('\n').slice(0, count).map((line) => JSON.parse(line));
}

/** Greedy completions of `prompts` by the checkpoint in `dir` on one inference path. */
async function completionsVia(dir: string, inference: 'onnxruntime' | 'tfjs', prompts: Awaited<ReturnType<typeof firstDevPrompts>>) {
  const { loadPolicy, generateCompletions, releasePolicy } = await import('../stages/lib/judge/model.ts');
  const silent = { info: () => {}, warn: () => {}, debug: () => {} };
  const { policy, engine } = await loadPolicy(dir, { backend: 'wasm', inference }, silent);
  expect(engine.inference).toBe(inference);
  try {
    return await generateCompletions(policy, prompts, { n: 1, batchSize: 6, maxNewTokens: 160, temperature: 0, topK: 0, topP: 1, rng: new Rng(0, 'smoke') });
  } finally {
    await releasePolicy(policy);
  }
}
