/**
 * Picking the next token from one row of logits, in JS with the caller's seeded random source (so a seed
 * gives the same tokens on every backend). Order as in HF's logits processors: temperature, then
 * top-k, then top-p (nucleus, Holtzman et al. 2020).
 */
import type { RandomSource } from '../host.ts';

export interface SamplingOptions {
  /** 0 means greedy (argmax). */
  temperature: number;
  /** Keep the k most likely tokens; 0 keeps all. */
  topK: number;
  /** Keep the smallest set whose probability reaches p; 1 keeps all. */
  topP: number;
}

/** log softmax(logits)[index], computed stably. */
export function logSoftmaxAt(logits: ArrayLike<number>, index: number): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i] as number);
  let total = 0;
  for (let i = 0; i < logits.length; i++) total += Math.exp((logits[i] as number) - max);
  return (logits[index] as number) - max - Math.log(total);
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if ((values[i] as number) > (values[best] as number)) best = i;
  return best;
}

/**
 * The repetition penalty of Keskar et al. 2019 (CTRL, §4.1), as transformers'
 * RepetitionPenaltyLogitsProcessor applies it: every id in `seen` (the prompt and the completion so
 * far) has its logit divided by `penalty` when positive and multiplied by it when negative, so
 * `penalty` > 1 makes a seen token less likely either way. Returns a penalized copy; `logits` is
 * left as the model gave it.
 */
export function penalizeRepetition(logits: Float32Array, seen: Iterable<number>, penalty: number): Float32Array {
  const out = logits.slice();
  // Once per distinct id, however often it occurs (transformers gathers and scatters by id).
  for (const id of seen instanceof Set ? seen : new Set(seen)) {
    if (id < 0 || id >= out.length) continue;
    const logit = out[id] as number;
    out[id] = logit < 0 ? logit * penalty : logit / penalty;
  }
  return out;
}

export function sampleToken(logits: ArrayLike<number>, options: SamplingOptions, rng: RandomSource): number {
  if (options.temperature <= 0) return argmax(logits);
  // Candidates sorted by logit, highest first; ties keep the lower id first.
  let order = Array.from({ length: logits.length }, (_, i) => i).sort((a, b) => (logits[b] as number) - (logits[a] as number) || a - b);
  if (options.topK > 0 && options.topK < order.length) order = order.slice(0, options.topK);
  const top = (logits[order[0] as number] as number) / options.temperature;
  let probs = order.map((i) => Math.exp((logits[i] as number) / options.temperature - top));
  let total = probs.reduce((a, b) => a + b, 0);
  if (options.topP < 1) {
    let cumulative = 0;
    let keep = 0;
    while (keep < probs.length && cumulative < options.topP * total) cumulative += probs[keep++] as number;
    order = order.slice(0, Math.max(1, keep));
    probs = probs.slice(0, order.length);
    total = probs.reduce((a, b) => a + b, 0);
  }
  let u = rng.next() * total;
  for (let i = 0; i < order.length; i++) {
    u -= probs[i] as number;
    if (u < 0) return order[i] as number;
  }
  return order[order.length - 1] as number;
}
