/**
 * The path a user's Qwen2.5 checkpoint takes, at a small shape: a published-style folder
 * (scripts/real-fixture.ts: bf16 shards, tied, q/k/v bias, Qwen tokenizer) trained with LoRA,
 * saved (merged, float32) with its adapter and exported to ONNX; the export loads in
 * transformers.js from local files and decodes greedily the tokens the engine decodes (with and
 * without generation_config.json's repetition penalty), and the
 * adapter is in PEFT's layout.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import { addLora, disposeModel, generate, initEngine, loadModel, loraOptionsSchema, saveAdapter, saveModel, trainableParams } from '../../packages/engine/src/index.ts';
import { generationDefaults, readGenerationConfig } from '../../packages/engine/src/generate/generation-config.ts';
import { exportCheckpoint } from '../../packages/engine/src/onnx/index.ts';
import { readSafetensorsHeader } from '../../packages/engine/src/io/safetensors.ts';
import { copyTokenizerFiles, loadTokenizer } from '../../packages/engine/src/tokenizer/tokenizer.ts';
import { writeRealFixture } from '../../scripts/real-fixture.ts';

const scratch = mkdtempSync(join(tmpdir(), 'real-export-'));
beforeAll(async () => {
  await initEngine({ backend: 'wasm' });
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('a Qwen2.5-shaped checkpoint, LoRA-trained and exported', () => {
  it('loads in transformers.js (local files only) and greedy-decodes the engine\'s 16 tokens; the adapter is in PEFT\'s layout', async () => {
    const base = join(scratch, 'base');
    await writeRealFixture(base, { layers: 2, hidden: 64, intermediate: 96, heads: 4, kvHeads: 2, maxPositions: 128, maxShardBytes: 8e6, std: 0.1 });
    const model = loadModel(base);
    const options = loraOptionsSchema.parse({ r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj', 'down_proj'] });
    addLora(model, options, new Rng(5));
    // Trained adapters stand in as random B (a fresh one is zero and would change nothing).
    const rng = new Rng(6);
    for (const [name, variable] of trainableParams(model)) {
      if (name.includes('lora_B')) variable.assign(tf.tensor(Array.from({ length: variable.size }, () => rng.normal() * 0.2), variable.shape));
    }
    const out = join(scratch, 'trained');
    await saveModel(model, out, {}, { dtype: 'float32' });
    await saveAdapter(model, join(out, 'adapter'), { baseModel: base });
    await copyTokenizerFiles((await loadTokenizer(base)).dir, out);
    await exportCheckpoint(out);

    const tokenizer = await loadTokenizer(out);
    const prompt = tokenizer.encode('wireless noise cancelling headphones');
    const [engine] = await generate(model, [prompt], { maxNewTokens: 16, temperature: 0, topK: 0, topP: 1, eosTokenIds: [], rng: new Rng(0) });
    expect(engine!.tokens).toHaveLength(16);

    const transformers = await import('@huggingface/transformers');
    transformers.env.allowRemoteModels = false;
    transformers.env.localModelPath = scratch;
    const loaded = await transformers.AutoModelForCausalLM.from_pretrained('trained', { local_files_only: true, dtype: 'fp32' });
    const ids = (values: number[]) => new transformers.Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), [1, values.length]);
    const hfGreedy = async (repetitionPenalty?: number) => {
      const output = (await loaded.generate({
        input_ids: ids(prompt),
        attention_mask: ids(prompt.map(() => 1)),
        max_new_tokens: 16,
        min_new_tokens: 16,
        do_sample: false,
        ...(repetitionPenalty === undefined ? {} : { repetition_penalty: repetitionPenalty }),
      })) as InstanceType<typeof transformers.Tensor>;
      return (output.tolist() as bigint[][])[0]!.slice(prompt.length).map(Number);
    };
    expect(await hfGreedy(1)).toEqual(engine!.tokens);
    // The folder's generation_config.json says repetition_penalty 1.1 (Qwen2.5-Instruct's), which
    // transformers.js applies when the call does not override it; the engine applies it as well.
    const fromFile = generationDefaults(readGenerationConfig(out)).repetitionPenalty;
    expect(fromFile).toBe(1.1);
    const [penalized] = await generate(model, [prompt], { maxNewTokens: 16, temperature: 0, topK: 0, topP: 1, eosTokenIds: [], repetitionPenalty: fromFile, rng: new Rng(0) });
    expect(await hfGreedy()).toEqual(penalized!.tokens);
    // A stronger penalty, which certainly changes greedy's picks here, agrees too.
    const [strong] = await generate(model, [prompt], { maxNewTokens: 16, temperature: 0, topK: 0, topP: 1, eosTokenIds: [], repetitionPenalty: 3, rng: new Rng(0) });
    expect(strong!.tokens).not.toEqual(engine!.tokens);
    expect(await hfGreedy(3)).toEqual(strong!.tokens);
    await loaded.dispose();

    // PEFT's save_pretrained layout: adapter_config.json with LoraConfig's keys, and tensors
    // base_model.model.<module>.lora_A.weight (r, in) / lora_B.weight (out, r), float32.
    const config = JSON.parse(readFileSync(join(out, 'adapter', 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: ['down_proj', 'q_proj', 'v_proj'], bias: 'none', fan_in_fan_out: false, base_model_name_or_path: base });
    const entries = readSafetensorsHeader(join(out, 'adapter', 'adapter_model.safetensors')).entries;
    const names = [...entries.keys()].sort();
    expect(names).toHaveLength(2 * 3 * 2); // A and B, three modules, two layers
    expect(entries.get('base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight')).toMatchObject({ dtype: 'F32', shape: [4, 64] });
    expect(entries.get('base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight')).toMatchObject({ dtype: 'F32', shape: [32, 4] }); // 2 kv heads x 16
    expect(entries.get('base_model.model.model.layers.0.mlp.down_proj.lora_A.weight')).toMatchObject({ dtype: 'F32', shape: [4, 96] });
    for (const name of names) expect(name).toMatch(/^base_model\.model\.model\.layers\.[01]\.(self_attn\.[qv]_proj|mlp\.down_proj)\.lora_[AB]\.weight$/);
    disposeModel(model);
  });
});
