/**
 * Training that resists the majority grade. A small judge trained on skewed grades (one public set:
 * 62 % L4, 3 % L2) learns the prior and answers one grade for every pair. Each draw of training
 * data (SFT's epochs, the RL pool's prompts, DPO's pairs) is therefore weighted by grade, with the
 * inverse frequency of the set it draws from, tempered and capped:
 *
 *   share(g) = n(g) / n,   w(g) = min(cap, (max_h share(h) / share(g))^temper)
 *
 * The majority grade weighs 1; temper 1 would equalise the grades (each L2 example of the set above
 * drawn 21 times as often as an L4 one, memorised rather than learned), temper 0 is no balancing.
 * The expected share of grade g in a draw becomes share(g)·w(g) / Σ_h share(h)·w(h): with the
 * default temper 0.5 and cap 4, shares 62 / 23 / 12 / 3 % (L4 / L3 / L1 / L2) get weights 1, 1.64,
 * 2.27 and 4 (4.55 capped), and a draw holds 45 / 27 / 20 / 9 %.
 * (Class-balanced weighting as in Cui et al. 2019, "Class-Balanced Loss Based on Effective Number of
 * Samples", with a power in place of the effective number.)
 */
import { z } from 'zod';
import type { Rng } from '../../../pipeline/api.ts';
import { GRADES, type Grade } from './types.ts';

export const gradeBalanceSchema = z
  .strictObject({
    mode: z
      .enum(['auto', 'on', 'off'])
      .default('auto')
      .describe('auto: on for imported data (examples whose meta.source is not "world") whose majority grade holds more than `majority` of train; off for the built-in world, whose grades the generator balances'),
    majority: z
      .number()
      .min(0)
      .max(1)
      .default(0.5)
      .describe("auto balances only when one grade holds more than this share of the train set (a constant judge of that grade would already be right on most pairs)"),
    temper: z.number().min(0).max(1).default(0.5).describe('Power of the inverse grade frequency (0 = no balancing, 1 = equal grades)'),
    cap: z.number().min(1).default(4).describe("Largest weight of a grade, relative to the majority grade's 1"),
  })
  .default({ mode: 'auto', majority: 0.5, temper: 0.5, cap: 4 })
  .describe("Grade-balanced draws: each grade weighted by (majority share / its share)^temper, at most cap (stages/lib/relevance/grade-balance.ts)");
export type GradeBalanceParams = z.output<typeof gradeBalanceSchema>;

/** What a balanced stage records (manifest metrics and the RL pool file). */
export interface GradeBalance {
  temper: number;
  cap: number;
}

export interface GradeWeights {
  /** n(g) / n of the set drawn from. */
  shares: Record<Grade, number>;
  /** w(g); 0 for a grade the set lacks. */
  weights: Record<Grade, number>;
  /** The expected share of each grade in a balanced draw. */
  balancedShares: Record<Grade, number>;
}

/**
 * Whether to balance: `on`; or `auto` with imported examples (meta.source other than "world") whose
 * most frequent grade holds more than `majority` of them. Below that the prior is no trap, and
 * boosting grades a few per cent of the pairs hold cost more than it gave: on Chorus's dev split
 * (train L1 44 %, L4 45 %, L2 8 %, L3 3 %; seed 13) the balanced SFT model answered L3 for 11 % of
 * pairs (gold 2 %), and its Acc@2 / Acc@4 / macro-F1 / QWK fell from 0.789 / 0.765 / 0.367 / 0.498
 * to 0.690 / 0.653 / 0.349 / 0.398. On esci-small (L1 37 %) it moved the pooled judge within noise
 * (dev, 128 pairs: Acc@2 / macro-F1 / QWK 0.828 / 0.442 / 0.607 off, 0.805 / 0.417 / 0.535 on).
 */
export function balanceEnabled(mode: GradeBalanceParams['mode'], examples: readonly { label: Grade; meta: { source: string } }[], majority = 0.5): boolean {
  if (mode !== 'auto') return mode === 'on';
  if (!examples.some((e) => e.meta.source !== 'world')) return false;
  const { shares } = gradeWeights(examples.map((e) => e.label), { temper: 0, cap: 1 });
  return Math.max(...GRADES.map((g) => shares[g])) > majority;
}

export function gradeWeights(grades: readonly Grade[], balance: GradeBalance): GradeWeights {
  const counts = Object.fromEntries(GRADES.map((g) => [g, 0])) as Record<Grade, number>;
  for (const g of grades) counts[g]++;
  const n = Math.max(1, grades.length);
  const shares = Object.fromEntries(GRADES.map((g) => [g, counts[g] / n])) as Record<Grade, number>;
  const majority = Math.max(...GRADES.map((g) => shares[g]));
  const weights = Object.fromEntries(
    GRADES.map((g) => [g, counts[g] === 0 ? 0 : Math.min(balance.cap, (majority / shares[g]) ** balance.temper)]),
  ) as Record<Grade, number>;
  const mass = GRADES.reduce((sum, g) => sum + shares[g] * weights[g], 0) || 1;
  const balancedShares = Object.fromEntries(GRADES.map((g) => [g, (shares[g] * weights[g]) / mass])) as Record<Grade, number>;
  return { shares, weights, balancedShares };
}

/**
 * `size` items drawn with replacement, item i with probability ∝ w(grade of i), by systematic
 * sampling (one uniform offset): each item is drawn ⌊e⌋ or ⌈e⌉ times, e its expected count, so a
 * draw of the set's own size keeps every item of the majority grade at most once and repeats the
 * rare grades' items. The draw is in a seeded random order.
 */
export function balancedDraw<T>(items: readonly T[], gradeOf: (item: T) => Grade, balance: GradeBalance, size: number, rng: Rng): T[] {
  if (items.length === 0 || size <= 0) return [];
  const { weights } = gradeWeights(items.map(gradeOf), balance);
  const order = rng.shuffle(items.map((_, i) => i));
  const total = items.reduce((sum, item) => sum + weights[gradeOf(item)], 0);
  const offset = rng.next();
  const drawn: T[] = [];
  let cumulative = 0;
  for (const i of order) {
    const item = items[i] as T;
    const before = Math.floor(cumulative + offset);
    cumulative += (size * weights[gradeOf(item)]) / total;
    for (let k = before; k < Math.floor(cumulative + offset) && drawn.length < size; k++) drawn.push(item);
  }
  return rng.shuffle(drawn);
}

/**
 * The items in a seeded random order that favours the rare grades (weighted sampling without
 * replacement, Efraimidis & Spirakis 2006: key u^(1/w), largest first), so any prefix of it is a
 * grade-balanced sample with no item twice.
 */
export function balancedOrder<T>(items: readonly T[], gradeOf: (item: T) => Grade, balance: GradeBalance, rng: Rng): T[] {
  const { weights } = gradeWeights(items.map(gradeOf), balance);
  return items
    .map((item) => ({ item, key: Math.log(1 - rng.next()) / weights[gradeOf(item)] }))
    .sort((a, b) => b.key - a.key)
    .map(({ item }) => item);
}

/**
 * The balance a training stage applies to `examples` under its params (undefined when off), and
 * the figures its manifest records: grade_balance (1 on, 0 off), and per grade the set's share,
 * the weight and the balanced share.
 */
export function resolveGradeBalance(
  params: GradeBalanceParams,
  examples: readonly { label: Grade; meta: { source: string } }[],
): { balance: GradeBalance | undefined; metrics: Record<string, number> } {
  const on = balanceEnabled(params.mode, examples, params.majority);
  if (!on) return { balance: undefined, metrics: { grade_balance: 0 } };
  const balance = { temper: params.temper, cap: params.cap };
  const w = gradeWeights(examples.map((e) => e.label), balance);
  const metrics: Record<string, number> = { grade_balance: 1 };
  for (const g of GRADES) Object.assign(metrics, { [`grade_share_${g}`]: w.shares[g], [`grade_weight_${g}`]: w.weights[g], [`grade_balanced_share_${g}`]: w.balancedShares[g] });
  return { balance, metrics };
}
