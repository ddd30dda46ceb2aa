import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import {
  createModel,
  disposeModel,
  forward,
  generate,
  initEngine,
  penalizeRepetition,
  presets,
  sampleToken,
  sequenceLogprobs,
  type GenerateOptions,
  type Generation,
  type Model,
} from '../../packages/engine/src/index.ts';

let model: Model;
beforeAll(async () => {
  await initEngine({ backend: 'wasm' });
  // Init std 0.5 (not 0.02) so the next-token distribution is far from uniform and greedy is stable.
  model = createModel(presets.tiny(40, { num_hidden_layers: 2, max_position_embeddings: 64, initializer_range: 0.5 }), new Rng(21, 'engine/init'));
  return () => disposeModel(model);
});

const prompts = [[3, 14, 15, 9], [2, 6], [35, 8, 9, 7, 9, 3]];
const greedy: Omit<GenerateOptions, 'rng'> = { maxNewTokens: 8, temperature: 0, topK: 0, topP: 1, eosTokenIds: [] };

describe('forward', () => {
  it('gives a left-padded row the same logits at its real tokens as the unpadded row', () => {
    const alone = forward(model, [[5, 6, 7]]).logits; // (1, 3, V)
    const padded = forward(model, [[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]], { attentionMask: [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]] }).logits;
    const realPart = tf.slice(padded, [0, 2, 0], [1, 3, -1]);
    expect(tf.max(tf.abs(tf.sub(realPart, alone))).dataSync()[0]).toBeLessThan(1e-5);
  });
});

describe('frozen weights (cached, folded) for gradient-free calls', () => {
  it('give the logits of the trainable path, and follow the variables when they change', () => {
    const ids = [[4, 8, 15, 16, 23, 4]];
    const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!;
    const frozenBefore = forward(model, ids, { frozen: true }).logits;
    expect(maxDiff(frozenBefore, forward(model, ids).logits)).toBeLessThan(1e-4);
    // An optimizer-style assign gives the variable a new dataId: the cache must be rebuilt.
    const norm = model.params.get('model.layers.1.post_attention_layernorm.weight')!;
    const saved = tf.clone(norm);
    norm.assign(tf.mul(norm, 1.5));
    const frozenAfter = forward(model, ids, { frozen: true }).logits;
    expect(maxDiff(frozenAfter, forward(model, ids).logits)).toBeLessThan(1e-4);
    expect(maxDiff(frozenAfter, frozenBefore)).toBeGreaterThan(1e-3);
    norm.assign(saved);
  });
});

describe('generate', () => {
  it('batched generation equals one prompt at a time, and leaks no tensors', async () => {
    const batched = await generate(model, prompts, { ...greedy, rng: new Rng(0) });
    const single: Generation[] = [];
    for (const p of prompts) single.push(...(await generate(model, [p], { ...greedy, rng: new Rng(0) })));
    expect(batched.map((g) => g.tokens)).toEqual(single.map((g) => g.tokens));
    batched.forEach((g, i) => g.logprobs.forEach((lp, j) => expect(lp).toBeCloseTo(single[i]!.logprobs[j]!, 4)));
    // The first call cached the derived weights; from then on a call allocates nothing that stays.
    const settled = tf.memory().numTensors;
    await generate(model, prompts, { ...greedy, rng: new Rng(0) });
    expect(tf.memory().numTensors).toBe(settled);
  });

  it('returns the log-probs that teacher forcing (sequenceLogprobs) gives the same tokens', async () => {
    const out = await generate(model, prompts, { ...greedy, temperature: 1, rng: new Rng(5) });
    const { logprobs, mask } = sequenceLogprobs(model, prompts.map((prompt, i) => ({ prompt, completion: out[i]!.tokens })));
    const teacher = logprobs.arraySync();
    expect(mask.arraySync()).toEqual(out.map((g) => g.tokens.map(() => 1)));
    out.forEach((g, i) => g.logprobs.forEach((lp, j) => expect(lp).toBeCloseTo(teacher[i]![j]!, 4)));
  });

  it('at a temperature, gives log softmax(logits / T) of the forward pass (what GRPO trains on)', () => {
    const prompt = [3, 14, 15];
    const completion = [9, 2];
    const T = 2;
    const { logprobs } = sequenceLogprobs(model, [{ prompt, completion }], { temperature: T });
    // Completion token j is predicted at position prompt.length + j - 1: log softmax of logits/T there.
    const logits = forward(model, [[...prompt, ...completion]]).logits.arraySync() as number[][][];
    const expected = completion.map((token, j) => {
      const row = (logits[0]![prompt.length + j - 1] as number[]).map((l) => l / T);
      const top = Math.max(...row);
      const logSum = top + Math.log(row.reduce((a, l) => a + Math.exp(l - top), 0));
      return (row[token] as number) - logSum;
    });
    const got = logprobs.arraySync()[0]!;
    expected.forEach((lp, j) => expect(got[j]).toBeCloseTo(lp, 4));
    // And it differs from temperature 1 (the division is applied).
    expect(Math.abs(sequenceLogprobs(model, [{ prompt, completion }]).logprobs.arraySync()[0]![0]! - got[0]!)).toBeGreaterThan(1e-3);
  });

  it('applies a repetition penalty to the prompt and completion ids before argmax, keeping the model\'s own log-probs', async () => {
    const penalty = 1.5;
    const plain = await generate(model, prompts, { ...greedy, rng: new Rng(0) });
    const out = await generate(model, prompts, { ...greedy, repetitionPenalty: penalty, rng: new Rng(0) });
    // Reference, by teacher forcing: at each step the argmax of the forward pass's logits with every
    // id seen so far divided by the penalty (positive logit) or multiplied by it (negative).
    prompts.forEach((prompt, i) => {
      const tokens = out[i]!.tokens;
      const logits = forward(model, [[...prompt, ...tokens.slice(0, -1)]]).logits.arraySync() as number[][][];
      tokens.forEach((token, j) => {
        const seen = new Set([...prompt, ...tokens.slice(0, j)]);
        const row = (logits[0]![prompt.length + j - 1] as number[]).map((l, id) => (seen.has(id) ? (l < 0 ? l * penalty : l / penalty) : l));
        expect(token).toBe(row.indexOf(Math.max(...row)));
      });
    });
    // The penalty changed what greedy picks (the tiny model repeats itself without it) ...
    expect(out.map((g) => g.tokens)).not.toEqual(plain.map((g) => g.tokens));
    // ... and the log-probs are still the model's, as teacher forcing gives them.
    const teacher = sequenceLogprobs(model, prompts.map((prompt, i) => ({ prompt, completion: out[i]!.tokens }))).logprobs.arraySync();
    out.forEach((g, i) => g.logprobs.forEach((lp, j) => expect(lp).toBeCloseTo(teacher[i]![j]!, 4)));
  });

  it('is reproducible from the seed and varies with it', async () => {
    const sampled = (seed: number) => generate(model, prompts, { ...greedy, temperature: 1.5, topK: 0, topP: 1, rng: new Rng(seed) });
    const a = await sampled(1);
    expect((await sampled(1)).map((g) => g.tokens)).toEqual(a.map((g) => g.tokens));
    expect((await sampled(2)).map((g) => g.tokens)).not.toEqual(a.map((g) => g.tokens));
  });

  it('top-k 1 samples the argmax whatever the temperature', async () => {
    const g = await generate(model, prompts, { ...greedy, rng: new Rng(0) });
    const k1 = await generate(model, prompts, { ...greedy, temperature: 2, topK: 1, rng: new Rng(9) });
    expect(k1.map((x) => x.tokens)).toEqual(g.map((x) => x.tokens));
  });

  it('stops a row at EOS, keeping the EOS token, while the others go on', async () => {
    const free = await generate(model, prompts, { ...greedy, rng: new Rng(0) });
    const eos = free[0]!.tokens[2]!;
    const out = await generate(model, prompts, { ...greedy, eosTokenIds: [eos], rng: new Rng(0) });
    // Each row ends right after its first `eos`, or runs to the length limit without one.
    out.forEach((g, i) => {
      const at = free[i]!.tokens.indexOf(eos);
      expect(g).toMatchObject(at === -1 ? { finishReason: 'length', tokens: free[i]!.tokens } : { finishReason: 'eos', tokens: free[i]!.tokens.slice(0, at + 1) });
      expect(g.logprobs).toHaveLength(g.tokens.length);
    });
    expect(out[0]!.finishReason).toBe('eos');
  });

  it('stops a row once its decoded text contains a stop string', async () => {
    const free = await generate(model, prompts, { ...greedy, rng: new Rng(0) });
    const decode = (ids: number[]) => ids.map((i) => String.fromCharCode(65 + i)).join('');
    const stop = decode(free[1]!.tokens.slice(3, 5)); // the second row's tokens 3-4 as text
    const out = await generate(model, prompts, { ...greedy, stop: { strings: [stop], decode }, rng: new Rng(0) });
    // The first prefix whose text contains the stop string (at most 5 tokens, maybe fewer).
    const stopAt = free[1]!.tokens.findIndex((_, j) => decode(free[1]!.tokens.slice(0, j + 1)).includes(stop));
    expect(stopAt).toBeLessThanOrEqual(4);
    expect(out[1]).toMatchObject({ finishReason: 'stop', tokens: free[1]!.tokens.slice(0, stopAt + 1), text: decode(free[1]!.tokens.slice(0, stopAt + 1)) });
  });

  it('refuses a token id outside the vocabulary, naming row and position', async () => {
    await expect(generate(model, [[1, 2], [3, 40]], { ...greedy, rng: new Rng(0) })).rejects.toThrow('token id 40 at row 1, position 1 is outside the vocabulary [0, 40)');
  });

  it('refuses prompts that would run past max_position_embeddings', async () => {
    await expect(generate(model, [[1, 2, 3]], { ...greedy, maxNewTokens: 62, rng: new Rng(0) })).rejects.toThrow(
      'generate: longest prompt 3 + maxNewTokens 62 exceeds max_position_embeddings 64',
    );
  });
});

describe('penalizeRepetition', () => {
  it('divides a seen positive logit by the penalty, multiplies a seen negative one, leaves the rest and the input', () => {
    const logits = Float32Array.from([2, -1, 0.5, -3]);
    expect(Array.from(penalizeRepetition(logits, [0, 1, 1, 9], 2))).toEqual([1, -2, 0.5, -3]);
    expect(Array.from(logits)).toEqual([2, -1, 0.5, -3]);
  });
});

describe('sampleToken', () => {
  // Probabilities 0.5, 0.3, 0.15, 0.05.
  const logits = [0.5, 0.3, 0.15, 0.05].map(Math.log);
  const draws = (options: { temperature: number; topK: number; topP: number }) => {
    const rng = new Rng(3);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) counts[sampleToken(logits, options, rng)]! += 1;
    return counts.map((c) => c / 4000);
  };
  it('samples the softmax at temperature 1', () => {
    const freq = draws({ temperature: 1, topK: 0, topP: 1 });
    [0.5, 0.3, 0.15, 0.05].forEach((p, i) => expect(Math.abs(freq[i]! - p)).toBeLessThan(0.03));
  });
  it('top-p 0.7 keeps the smallest set reaching 0.7 (0.5 + 0.3) and renormalises', () => {
    const freq = draws({ temperature: 1, topK: 0, topP: 0.7 });
    expect(freq[2]! + freq[3]!).toBe(0);
    expect(Math.abs(freq[0]! - 0.5 / 0.8)).toBeLessThan(0.03);
  });
  it('top-k 3 drops the least likely token', () => {
    expect(draws({ temperature: 1, topK: 3, topP: 1 })[3]).toBe(0);
  });
});

describe('sequenceLogprobs', () => {
  it('works under variableGrads and zeroes padding', () => {
    const batch = [
      { prompt: [1, 2, 3], completion: [4, 5] },
      { prompt: [7], completion: [8, 9, 10, 11] },
    ];
    const { value, grads } = tf.variableGrads(() => {
      const { logprobs } = sequenceLogprobs(model, batch);
      return tf.neg(tf.sum(logprobs)) as tf.Scalar;
    }, [...model.params.values()]);
    expect(Number.isFinite(value.dataSync()[0])).toBe(true);
    const qGrad = grads[model.params.get('model.layers.0.self_attn.q_proj.weight')!.name]!;
    expect(tf.sum(tf.abs(qGrad)).dataSync()[0]).toBeGreaterThan(0);
    const frozen = sequenceLogprobs(model, batch, { frozen: true });
    expect((frozen.logprobs.arraySync() as number[][])[0]!.slice(2).every((x) => x === 0)).toBe(true);
    expect(frozen.mask.arraySync()).toEqual([[1, 1, 0, 0], [1, 1, 1, 1]]);
    // Sequence log-prob of row 0 = sum of its two completion token log-probs from a plain forward.
    const logits = forward(model, [[1, 2, 3, 4, 5]]).logits;
    const logp = tf.logSoftmax(logits).arraySync()[0]!;
    expect((tf.sum(frozen.logprobs, 1).arraySync() as number[])[0]).toBeCloseTo(logp[2]![4]! + logp[3]![5]!, 4);
  });
});
