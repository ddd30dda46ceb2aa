/**
 * "At most N" of a split, drawn at random with the pipeline's seeded RNG rather than the first N:
 * splits are grouped by query, so the first N would be the candidates of a handful of queries.
 */
import { type Rng } from '../../../pipeline/api.ts';

/**
 * `count` records drawn at random with `rng` (all when count is 0 or not below the length), in
 * their original order. What every "at most N" option uses instead of the first N: splits are
 * grouped by query, so the first N would be a handful of queries.
 */
export function seededSample<T>(records: readonly T[], count: number, rng: Rng): T[] {
  if (count <= 0 || count >= records.length) return [...records];
  const chosen = rng.shuffle(records.map((_, i) => i)).slice(0, count);
  return chosen.sort((a, b) => a - b).map((i) => records[i] as T);
}

/**
 * `count` records drawn at random with `rng`, stratified by `stratumOf` (all when count is 0 or
 * not below the length), in their original order. Each stratum gets its proportional share
 * count·n_s/n rounded down, and the largest remainders take the seats left (Hamilton's method), so
 * a capped evaluation keeps the split's grade shares to within one pair each instead of by chance:
 * a uniform draw of 400 from a split with 3 % L2 holds 12 ± 3.4 L2 pairs; this draw holds 12.
 * Example: strata of 50 / 30 / 20 records, count 10: 5 / 3 / 2.
 */
export function stratifiedSample<T>(records: readonly T[], count: number, stratumOf: (record: T) => string, rng: Rng): T[] {
  if (count <= 0 || count >= records.length) return [...records];
  const strata = new Map<string, number[]>();
  records.forEach((record, i) => {
    const key = stratumOf(record);
    strata.set(key, [...(strata.get(key) ?? []), i]);
  });
  // Sorted keys: the allocation and each stratum's stream do not depend on the records' order.
  const keys = [...strata.keys()].sort();
  const quota = keys.map((key) => (count * (strata.get(key) as number[]).length) / records.length);
  const seats = quota.map(Math.floor);
  const left = count - seats.reduce((a, b) => a + b, 0);
  const byRemainder = keys.map((_, k) => k).sort((a, b) => (quota[b] as number) - (seats[b] as number) - ((quota[a] as number) - (seats[a] as number)) || a - b);
  for (const k of byRemainder.slice(0, left)) seats[k] = (seats[k] as number) + 1;
  const chosen = keys.flatMap((key, k) => rng.fork(`stratum-${key}`).shuffle([...(strata.get(key) as number[])]).slice(0, seats[k]));
  return chosen.sort((a, b) => a - b).map((i) => records[i] as T);
}
