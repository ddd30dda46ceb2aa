/**
 * An example reward file: does the completion name every business rule that decides this example?
 *
 * Use it from a GRPO stage:
 *   rewards:
 *     - { use: ./examples/rewards/rule-citation.ts, weight: 0.5, with: { penalty: 0.5 } }
 *
 * Examples without firing rules return null: the reward does not apply to them, so they are left
 * out of its logged mean and add nothing to the total.
 */
import type { RewardFunction } from '../../stages/lib/rl/rewards.ts';

interface Params {
  /** Subtracted per rule named that does not fire (citing rules at random should not pay). */
  penalty?: number;
}

const ruleCitation: RewardFunction<Params> = (batch, params) => {
  const penalty = params.penalty ?? 0;
  return batch.map(({ meta, parsed }) => {
    if (meta.rules.length === 0) return null;
    const named = new Set(parsed.steps.rules ?? []);
    const cited = meta.rules.filter((id) => named.has(id)).length;
    const spurious = [...named].filter((id) => !meta.rules.includes(id)).length;
    return Math.max(0, cited / meta.rules.length - penalty * spurious);
  });
};

export default ruleCitation;
