/**
 * The SFT-shaped training step bench/engine.ts times: the tiny preset with 2 layers at vocab 1024,
 * 16 rows of 225-255 tokens, loss on the last 95 of each (the lore SFT shape). Run directly, it is
 * the server bench/engine.ts starts for engine.wasm_threads (a backend starts once per process):
 *
 *   node --import tsx bench/engine-sft-shape.ts <wasm_threads>
 *
 * prints {"ready": ..., "engine": ...}, then answers each stdin line "step" with {"seconds": ...}.
 */
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { Rng } from '../pipeline/rng.ts';
import { AdamW, adamWOptionsSchema, causalLmLoss, createModel, initEngine, padBatch, presets, trainStep, type PaddedBatch } from '#engine';

export const SFT_SHAPE = { vocab: 1024, layers: 2, rows: 16, min_len: 225, max_len: 255, completion: 95 };

/** The batch (always the same: seeded) and its token count (prompt included, padding not). */
export function sftShapedBatch(): { batch: PaddedBatch; tokens: number } {
  const rng = new Rng(0, 'bench/data-parallel');
  const examples = Array.from({ length: SFT_SHAPE.rows }, () => {
    const length = SFT_SHAPE.min_len + rng.int(SFT_SHAPE.max_len - SFT_SHAPE.min_len + 1);
    const ids = Array.from({ length }, () => rng.int(SFT_SHAPE.vocab));
    return { ids, lossMask: ids.map((_, t) => (t >= length - SFT_SHAPE.completion ? 1 : 0)) };
  });
  return { batch: padBatch(examples), tokens: examples.reduce((n, e) => n + e.ids.length, 0) };
}

export const sftShapedConfig = () => presets.tiny(SFT_SHAPE.vocab, { num_hidden_layers: SFT_SHAPE.layers });

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const threads = Number(process.argv[2]);
  const engine = await initEngine({ backend: 'wasm', wasm_threads: threads });
  const model = createModel(sftShapedConfig(), new Rng(0, 'engine/init'));
  const optimizer = new AdamW(model.params, adamWOptionsSchema.parse({}));
  const { batch } = sftShapedBatch();
  const step = () => trainStep(model, optimizer, [batch], (b) => causalLmLoss(model, b), { lr: 1e-3, maxGradNorm: 1 });
  await step(); // warm-up
  console.log(JSON.stringify({ ready: true, engine }));
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() !== 'step') {
      console.log(JSON.stringify({ error: `unknown request ${JSON.stringify(line)} (expected step)` }));
      continue;
    }
    const start = performance.now();
    await step();
    console.log(JSON.stringify({ seconds: (performance.now() - start) / 1000 }));
  }
  // Emscripten's pthread workers would keep the process alive.
  process.exit(0);
}
