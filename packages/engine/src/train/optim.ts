/**
 * AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization"), gradient clipping by
 * global norm and the warmup + cosine schedule, as PyTorch / nanoGPT define them. tfjs' own Adam
 * has no decoupled decay and keeps its moments where a checkpoint cannot name them, hence ours.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { fusedAdamW, fusedKernels, fusedSumOfSquares } from '../runtime/fused.ts';

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

  /**
   * One update with gradients keyed like `params`: p <- p - lr (m^ / (sqrt(v^) + eps) + wd p),
   * each gradient multiplied by `gradScale` first (the clipping coefficient). With the fused
   * kernels, one kernel call per parameter instead of about twelve.
   */
  apply(grads: Map<string, tf.Tensor>, lr: number, gradScale = 1): void {
    this.step += 1;
    const { beta1, beta2, eps, weight_decay } = this.options;
    const correction1 = 1 - beta1 ** this.step;
    const correction2 = 1 - beta2 ** this.step;
    const fused = fusedKernels();
    tf.tidy(() => {
      for (const [name, p] of this.params) {
        const scaled = grads.get(name);
        if (!scaled) continue;
        const m = this.m.get(name) as tf.Variable;
        const v = this.v.get(name) as tf.Variable;
        // Decay matrices only: norms and biases (1-D) stay undecayed, the nanoGPT / HF convention.
        const decays = p.rank >= 2 && weight_decay > 0;
        if (fused) {
          const [p1, m1, v1] = fusedAdamW(p, scaled, m, v, { lr, beta1, beta2, eps, correction1, correction2, decay: decays ? lr * weight_decay : 0, gradScale });
          m.assign(m1);
          v.assign(v1);
          p.assign(p1);
          continue;
        }
        const g = gradScale === 1 ? scaled : tf.mul(scaled, gradScale);
        m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1)));
        v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2)));
        const update = tf.div(tf.div(m, correction1), tf.add(tf.sqrt(tf.div(v, correction2)), eps));
        const decayed = decays ? tf.mul(p, 1 - lr * weight_decay) : p;
        p.assign(tf.sub(decayed, tf.mul(update, lr)));
      }
    });
  }

  /**
   * Clips the gradients to global norm `maxGradNorm` (0 or Infinity: no clipping) and applies
   * them; returns the norm before clipping. The clipped gradients are never materialised: the
   * coefficient scales them inside the update.
   */
  async clipAndApply(grads: Map<string, tf.Tensor>, lr: number, maxGradNorm: number): Promise<number> {
    const norm = await globalNorm(grads);
    this.apply(grads, lr, clipCoefficient(norm, maxGradNorm > 0 ? maxGradNorm : Infinity));
    return norm;
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
  const norm = await globalNorm(grads);
  const coefficient = clipCoefficient(norm, maxNorm);
  const clipped = new Map<string, tf.Tensor>();
  for (const [name, g] of grads) clipped.set(name, tf.mul(g, coefficient));
  return { grads: clipped, norm };
}

/** The L2 norm of all gradients together (read back asynchronously: webgpu has no sync reads). */
export async function globalNorm(grads: Map<string, tf.Tensor>): Promise<number> {
  if (fusedKernels()) return Math.sqrt(fusedSumOfSquares(grads.values()));
  const normTensor = tf.tidy(() => tf.sqrt(tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g))))));
  const norm = (await normTensor.data())[0] as number;
  normTensor.dispose();
  return norm;
}

/** PyTorch `clip_grad_norm_`'s scale: maxNorm / (norm + 1e-6), capped at 1. */
function clipCoefficient(norm: number, maxNorm: number): number {
  return Math.min(1, maxNorm / (norm + 1e-6));
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
