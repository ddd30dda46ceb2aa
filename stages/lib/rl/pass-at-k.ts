/**
 * How often k samples of a prompt hold a correct one: the sample stage's pass@k figures (LORE's
 * pass@N sampling), an evaluation of a sampling policy rather than an advantage.
 */

/**
 * The unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models Trained on
 * Code"): with n samples of which c are correct, 1 - C(n-c, k) / C(n, k), computed as a product
 * to stay stable.
 */
export function unbiasedPassAtK(n: number, c: number, k: number): number {
  if (k > n) throw new Error(`pass@${k} needs at least ${k} samples, got ${n}`);
  if (n - c < k) return 1;
  let missAll = 1;
  for (let i = n - c + 1; i <= n; i++) missAll *= 1 - k / i;
  return 1 - missAll;
}
