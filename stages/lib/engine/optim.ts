/**
 * AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization"), gradient clipping by
 * global norm and the warmup + cosine schedule, as PyTorch / nanoGPT define them. tfjs' own Adam
 * has no decoupled decay and keeps its moments where a checkpoint cannot name them, hence ours.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';

/** Optimizer settings for stage schemas to embed; defaults are PyTorch's AdamW, decay as nanoGPT. */
export const adamWOptionsSchema = z.object({
  beta1: z.number().min(0).max(1).default(0.9).describe('AdamW first-moment decay.'),
  beta2: z.number().min(0).max(1).default(0.95).describe('AdamW second-moment decay (nanoGPT / Llama use 0.95).'),
  eps: z.number().positive().default(1e-8).describe('AdamW denominator epsilon.'),
  weight_decay: z.number().min(0).default(0.1).describe('Decoupled weight decay on matrices; never on 1-D params (norms, biases).'),
});
export type AdamWOptions = z.output<typeof adamWOptionsSchema>;

export class AdamW {
  /** Completed updates; bias correction uses it. */
  step = 0;
  readonly m = new Map<string, tf.Variable>();
  readonly v = new Map<string, tf.Variable>();

  constructor(
    readonly params: Map<string, tf.Variable>,
    readonly options: AdamWOptions,
  ) {
    for (const [name, p] of params) {
      this.m.set(name, tf.variable(tf.zerosLike(p), false));
      this.v.set(name, tf.variable(tf.zerosLike(p), false));
    }
  }

  /** One update with gradients keyed like `params`: p <- p - lr (m^ / (sqrt(v^) + eps) + wd p). */
  apply(grads: Map<string, tf.Tensor>, lr: number): void {
    this.step += 1;
    const { beta1, beta2, eps, weight_decay } = this.options;
    const correction1 = 1 - beta1 ** this.step;
    const correction2 = 1 - beta2 ** this.step;
    tf.tidy(() => {
      for (const [name, p] of this.params) {
        const g = grads.get(name);
        if (!g) continue;
        const m = this.m.get(name) as tf.Variable;
        const v = this.v.get(name) as tf.Variable;
        m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1)));
        v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2)));
        const update = tf.div(tf.div(m, correction1), tf.add(tf.sqrt(tf.div(v, correction2)), eps));
        // Decay matrices only: norms and biases (1-D) stay undecayed, the nanoGPT / HF convention.
        const decayed = p.rank >= 2 && weight_decay > 0 ? tf.mul(p, 1 - lr * weight_decay) : p;
        p.assign(tf.sub(decayed, tf.mul(update, lr)));
      }
    });
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
  }
}

/**
 * Scales gradients so their global L2 norm is at most maxNorm (PyTorch `clip_grad_norm_`:
 * coefficient maxNorm / (norm + 1e-6), capped at 1). Returns new tensors and the norm before clipping.
 */
export async function clipByGlobalNorm(grads: Map<string, tf.Tensor>, maxNorm: number): Promise<{ grads: Map<string, tf.Tensor>; norm: number }> {
  const normTensor = tf.tidy(() => tf.sqrt(tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g))))));
  const norm = (await normTensor.data())[0] as number;
  normTensor.dispose();
  const coefficient = Math.min(1, maxNorm / (norm + 1e-6));
  const clipped = new Map<string, tf.Tensor>();
  for (const [name, g] of grads) clipped.set(name, tf.mul(g, coefficient));
  return { grads: clipped, norm };
}

export interface LrSchedule {
  peak: number;
  warmup: number;
  total: number;
  min: number;
}

/** nanoGPT `get_lr`: linear warmup to peak over `warmup` steps, cosine down to `min` at `total`, then `min`. */
export function warmupCosineLr(step: number, { peak, warmup, total, min }: LrSchedule): number {
  if (step < warmup) return (peak * (step + 1)) / (warmup + 1);
  if (step >= total) return min;
  const ratio = (step - warmup) / Math.max(1, total - warmup);
  return min + 0.5 * (1 + Math.cos(Math.PI * ratio)) * (peak - min);
}
