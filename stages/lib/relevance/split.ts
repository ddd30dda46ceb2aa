/**
 * Train/dev/test split by query: every example of one query lands in one split, so no query is
 * seen in training and scored in evaluation. Queries are compared normalised ("Running Shoes" and
 * "running shoes" are one query).
 */
import { z } from 'zod';
import type { Rng } from '../../../pipeline/api.ts';
import { normalise } from './text.ts';
import type { Split } from './types.ts';

export const splitFractionsSchema = z
  .strictObject({
    train: z.number().min(0).max(1).default(0.8).describe('Fraction of queries in train.'),
    dev: z.number().min(0).max(1).default(0.1).describe('Fraction of queries in dev (threshold tuning, early stopping).'),
    test: z.number().min(0).max(1).default(0.1).describe('Fraction of queries in test.'),
  })
  .refine((f) => Math.abs(f.train + f.dev + f.test - 1) < 1e-9, { message: 'split fractions must sum to 1' })
  .default({ train: 0.8, dev: 0.1, test: 0.1 })
  .describe('How queries are divided among train, dev and test.');
export type SplitFractions = z.output<typeof splitFractionsSchema>;

export function splitByQuery<T extends { query: string }>(examples: readonly T[], fractions: SplitFractions, rng: Rng): Record<Split, T[]> {
  // Sorting before shuffling makes the split depend on the set of queries and the seed only.
  const queries = rng.shuffle([...new Set(examples.map((e) => normalise(e.query)))].sort());
  const trainEnd = Math.round(queries.length * fractions.train);
  const devEnd = trainEnd + Math.round(queries.length * fractions.dev);
  const splitOf = new Map<string, Split>();
  queries.forEach((q, i) => splitOf.set(q, i < trainEnd ? 'train' : i < devEnd ? 'dev' : 'test'));
  const result: Record<Split, T[]> = { train: [], dev: [], test: [] };
  for (const e of examples) result[splitOf.get(normalise(e.query)) as Split].push(e);
  return result;
}
