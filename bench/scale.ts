/**
 * Throughput at pretrained-model scale: a Qwen2.5-0.5B-shaped model (random weights: none can be
 * downloaded here) trained in full and with LoRA, and greedy generation, on the chosen backend,
 * with the share of the hardware's fp32 peak each reaches. The last line is JSON.
 *
 *   npm run bench:scale                                   (auto backend, the full 24-layer shape)
 *   npm run bench:scale -- --backend webgpu --steps 3
 *   npm run bench:scale -- --backend wasm --layers 2 --vocab 32768 --seq 64 --batch 2
 *
 * --layers / --vocab shrink the model where the backend cannot hold it, keeping Qwen2.5-0.5B's width,
 * heads and MLP; the JSON says which shape ran. Full AdamW training of 494M parameters needs about
 * 8 GB before activations; tfjs-wasm aborts (and is unusable after) already at 59M parameters (2
 * layers, vocab 32768), so --skip-full measures LoRA and generation only. Peak (--peak-gflops overrides): 130 GFLOP/s per
 * core of this machine's AVX-512 Xeon (measured when this bench was written) times the cores the backend uses; 67 TFLOP/s fp32
 * for an H100/H200 adapter. Work per token (Kaplan et al. 2020, §2.1): forward 2N + 2 L T d_attn
 * (N the matmul parameters a token passes through, LM head included), full training 3x forward,
 * LoRA training 2x (no weight gradient of the frozen base), generation 1x.
 */
import { availableParallelism, loadavg } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../pipeline/rng.ts';
import {
  AdamW,
  adamWOptionsSchema,
  addLora,
  causalLmLoss,
  createModel,
  describeMemory,
  disposeModel,
  generate,
  initEngine,
  loraOptionsSchema,
  memoryPerParameter,
  padBatch,
  parameterCount,
  parseModelConfig,
  trainableParams,
  trainStep,
  type BackendName,
  type Model,
} from '#engine';

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? (process.argv[i + 1] as string) : fallback;
}

const SPEC = {
  backend: flag('backend', 'auto') as BackendName,
  layers: Number(flag('layers', '24')),
  vocab: Number(flag('vocab', '151936')),
  batch: Number(flag('batch', '4')),
  seq: Number(flag('seq', '128')),
  steps: Number(flag('steps', '3')),
  genBatch: Number(flag('gen-batch', '4')),
  newTokens: Number(flag('new-tokens', '16')),
  loraRank: Number(flag('lora-r', '16')),
  skipFull: process.argv.includes('--skip-full'),
};

// Qwen2.5-0.5B's config.json, less the fields that do not change the computation.
const config = parseModelConfig(
  {
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    vocab_size: SPEC.vocab,
    hidden_size: 896,
    intermediate_size: 4864,
    num_hidden_layers: SPEC.layers,
    num_attention_heads: 14,
    num_key_value_heads: 2,
    max_position_embeddings: 32768,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    tie_word_embeddings: true,
  },
  'bench/scale Qwen2.5-0.5B shape',
);

const record = await initEngine({ backend: SPEC.backend }, { info: console.log, warn: console.log, debug: () => {} });
const peakFlag = flag('peak-gflops', '');
const peakGflops = peakFlag ? Number(peakFlag) : defaultPeakGflops();
console.log(`engine: tfjs ${record.tfjs} on ${record.backend}${record.adapter ? ` (${record.adapter}, ${record.vendor}, via ${record.route})` : ''}; peak ${peakGflops ?? 'unknown (give --peak-gflops)'} GFLOP/s fp32`);

const started = performance.now();
const model = createModel(config, new Rng(0, 'bench/scale'));
const params = parameterCount(model);
console.log(`model: Qwen2.5-0.5B shape with ${SPEC.layers} layers, vocab ${SPEC.vocab}: ${params} parameters (${((performance.now() - started) / 1000).toFixed(1)} s to build)`);

const { heads, headDim } = model.dims;
const d = config.hidden_size;
const kvWidth = model.dims.kvHeads * headDim;
// Matmul parameters a token passes through: q, k, v, o, gate, up, down per layer, then the LM head.
const perToken = SPEC.layers * (d * heads * headDim + 2 * d * kvWidth + heads * headDim * d + 3 * d * config.intermediate_size) + SPEC.vocab * d;
const forwardFlops = (context: number) => 2 * perToken + 2 * SPEC.layers * context * heads * headDim;

const rng = new Rng(1, 'bench/scale/data');
const ids = () => Array.from({ length: SPEC.seq }, () => rng.int(SPEC.vocab));
const batch = padBatch(Array.from({ length: SPEC.batch }, () => ({ ids: ids(), lossMask: new Array<number>(SPEC.seq).fill(1) })));
const tokensPerStep = SPEC.batch * SPEC.seq;

/** Tokens/s of the fastest of SPEC.steps training steps after one warm-up step. */
async function trainTokS(label: string, optimizer: AdamW, m: Model): Promise<number> {
  const ms: number[] = [];
  for (let i = 0; i <= SPEC.steps; i++) {
    const start = performance.now();
    const { loss } = await trainStep(m, optimizer, [batch], (b) => causalLmLoss(m, b), { lr: 1e-4, maxGradNorm: 1 });
    ms.push(performance.now() - start);
    console.log(`${label} step ${i}/${SPEC.steps}${i === 0 ? ' (warm-up)' : ''}: loss ${loss.toFixed(3)}, ${ms[i]!.toFixed(0)} ms, tf memory ${(tf.memory().numBytes / 2 ** 30).toFixed(2)} GiB`);
  }
  return tokensPerStep / (Math.min(...ms.slice(1)) / 1000);
}

const share = (tokS: number, flopsPerToken: number) => (peakGflops === null ? null : Number(((tokS * flopsPerToken) / (peakGflops * 1e9)).toFixed(4)));
const trainFlops = forwardFlops(SPEC.seq / 2); // causal: a token attends to half the sequence on average

console.log(describeMemory(memoryPerParameter(model)));
let fullTokS: number | null = null;
if (!SPEC.skipFull) try {
  const full = new AdamW(model.params, adamWOptionsSchema.parse({ weight_decay: 0 }));
  fullTokS = await trainTokS('full', full, model);
  full.dispose();
} catch (error) {
  // Out of memory is the expected failure at this scale: say so and go on to LoRA (webgpu, cpu).
  console.log(`full training failed: ${(error as Error).message.split('\n')[0]}`);
}

addLora(model, loraOptionsSchema.parse({ r: SPEC.loraRank, lora_alpha: 2 * SPEC.loraRank, target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] }), new Rng(2, 'bench/scale/lora'));
const memory = memoryPerParameter(model);
console.log(describeMemory(memory));
const lora = new AdamW(trainableParams(model), adamWOptionsSchema.parse({ weight_decay: 0 }));
const loraTokS = await trainTokS('LoRA', lora, model);
lora.dispose();

const prompts = Array.from({ length: SPEC.genBatch }, () => ids().slice(0, 16));
const runGeneration = () => generate(model, prompts, { maxNewTokens: SPEC.newTokens, temperature: 0, topK: 0, topP: 1, eosTokenIds: [], rng: new Rng(3) });
await runGeneration(); // warm-up: merged frozen weights, shader or kernel compilation
const genStart = performance.now();
const generated = await runGeneration();
const genTokens = generated.reduce((n, g) => n + g.tokens.length, 0);
const genTokS = genTokens / ((performance.now() - genStart) / 1000);
disposeModel(model);

const summary = {
  backend: record.backend,
  adapter: record.adapter ?? null,
  vendor: record.vendor ?? null,
  software_adapter: record.software === undefined ? null : record.software === 'true',
  shape: `qwen2.5-0.5b${SPEC.layers !== 24 || SPEC.vocab !== 151936 ? `, ${SPEC.layers} layers, vocab ${SPEC.vocab}` : ''}`,
  params,
  lora_trainable_params: memory.trainable.parameters,
  batch: SPEC.batch,
  seq: SPEC.seq,
  full_train_tok_s: fullTokS === null ? null : Number(fullTokS.toFixed(1)),
  lora_train_tok_s: Number(loraTokS.toFixed(1)),
  gen_tok_s: Number(genTokS.toFixed(1)),
  peak_gflops: peakGflops,
  full_train_peak_share: fullTokS === null ? null : share(fullTokS, 3 * trainFlops),
  lora_train_peak_share: share(loraTokS, 2 * trainFlops),
  gen_peak_share: share(genTokS, forwardFlops(16 + SPEC.newTokens / 2)),
  loadavg_1m: Number(loadavg()[0]!.toFixed(2)),
};
console.log(JSON.stringify(summary));

/** Known peaks only: an unknown GPU gets none (and the shares are null) rather than a guess. */
function defaultPeakGflops(): number | null {
  if (record.backend === 'webgpu' && record.software !== 'true') return /H100|H200/i.test(`${record.adapter} ${record.architecture}`) ? 67_000 : null;
  if (record.backend === 'tensorflow-gpu') return null;
  // wasm runs one thread under Node; the cpu backend and llvmpipe use what they get.
  const cores = record.backend === 'wasm' ? 1 : availableParallelism();
  return 130 * cores;
}
