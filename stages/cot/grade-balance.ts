/**
 * How rejection sampling changed the grade mix of a split. A teacher that can only verify some
 * grades (the rules teacher on data whose products the knowledge graph does not cover resolves
 * little but "irrelevant") leaves an SFT set from which a model learns to answer one grade: on
 * Chorus's train split it kept 1,076 of 1,165 L1 examples and 95 of 1,177 L4. `gradeSkew` names
 * that before anyone trains.
 */
import { GRADES, type Grade } from '../lib/relevance/types.ts';

export interface GradeBalance {
  asked: Record<Grade, number>;
  kept: Record<Grade, number>;
}

export function emptyGradeCounts(): Record<Grade, number> {
  return Object.fromEntries(GRADES.map((g) => [g, 0])) as Record<Grade, number>;
}

/**
 * A warning when a grade that makes up at least 5 % of the split kept less than half the split's
 * overall share, else undefined. Example: asked {L1: 100, L4: 100}, kept {L1: 90, L4: 10}: overall
 * 50 % kept, L4 10 % < 25 %, so L4 is named.
 */
export function gradeSkew(balance: GradeBalance): string | undefined {
  const asked = GRADES.reduce((n, g) => n + balance.asked[g], 0);
  const kept = GRADES.reduce((n, g) => n + balance.kept[g], 0);
  if (asked === 0 || kept === 0) return undefined;
  const overall = kept / asked;
  const starved = GRADES.filter((g) => balance.asked[g] >= 0.05 * asked && balance.kept[g] / balance.asked[g] < overall / 2);
  if (starved.length === 0) return undefined;
  const percent = (x: number) => `${Math.round(100 * x)}%`;
  const mix = GRADES.filter((g) => balance.asked[g] > 0)
    .map((g) => `${g} ${balance.kept[g]} of ${balance.asked[g]} (${percent(balance.kept[g] / balance.asked[g])})`)
    .join(', ');
  return `kept ${mix}: ${starved.join(', ')} kept less than half the overall ${percent(overall)}, so a model trained on this set will rarely answer ${starved.join(' or ')}`;
}
