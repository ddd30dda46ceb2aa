/**
 * The business-rule engine: a small declarative condition language over the features the relevance
 * analysis computes for a pair, and the rule that decides a grade when several fire.
 *
 * Conditions are data (in data/rules.yaml), not code, so a reviewer can read them and a rules
 * teacher can cite them; evaluation is a dozen lines, which is why no rule-engine library is used
 * (json-rules-engine and the like are async, event-based and far larger than the job).
 */
import { z } from 'zod';
import { GRADES, type Grade } from './types.ts';

export type FeatureValue = string | number | boolean;
/** What the analysis knows about a pair, by feature name (`category`, `link`, `attr.brand`, ...). */
export type Features = Record<string, FeatureValue>;

export type CountTest = { gte: number } | { lte: number };
export type LeafTest = FeatureValue | FeatureValue[] | CountTest;
export type Condition = { all: Condition[] } | { any: Condition[] } | { not: Condition } | Record<string, LeafTest>;

const featureValue = z.union([z.string(), z.number(), z.boolean()]);
const leafTest = z.union([
  featureValue,
  z.array(featureValue).min(1),
  z.strictObject({ gte: z.number() }),
  z.strictObject({ lte: z.number() }),
]);

export const conditionSchema: z.ZodType<Condition> = z.lazy(() =>
  z.union([
    z.strictObject({ all: z.array(conditionSchema).min(1) }),
    z.strictObject({ any: z.array(conditionSchema).min(1) }),
    z.strictObject({ not: conditionSchema }),
    z.record(z.string(), leafTest).refine((record) => Object.keys(record).length === 1, 'a feature test names exactly one feature'),
  ]),
) as z.ZodType<Condition>;

export const ruleSchema = z.strictObject({
  id: z.string().regex(/^R-[A-Z0-9-]+$/, 'rule ids look like R-ACCESSORY'),
  sentence: z.string().min(1).describe('The rule in one sentence, as the judge prompt states it.'),
  grade: z.enum(GRADES as [Grade, ...Grade[]]),
  priority: z.number().int().describe('Among firing rules the highest priority decides.'),
  general: z.boolean().default(false).describe('Restates a grade definition rather than a business rule.'),
  when: conditionSchema,
  example: z
    .strictObject({
      query: z.string(),
      item: z.strictObject({
        title: z.string(),
        type: z.string().describe('Product type name; the category path is looked up in the ontology.'),
        attributes: z.record(z.string(), z.string()).default({}),
        description: z.string().optional(),
        image_caption: z.string().optional(),
      }),
    })
    .describe('A pair this rule fires on and decides.'),
});
export type Rule = z.output<typeof ruleSchema>;

/** Names a condition refers to; the knowledge loader checks them against the known features. */
export function conditionFeatures(condition: Condition): string[] {
  if ('all' in condition && Array.isArray(condition.all)) return (condition.all as Condition[]).flatMap(conditionFeatures);
  if ('any' in condition && Array.isArray(condition.any)) return (condition.any as Condition[]).flatMap(conditionFeatures);
  if ('not' in condition && typeof condition.not === 'object' && condition.not !== null && !Array.isArray(condition.not)) {
    return conditionFeatures(condition.not as Condition);
  }
  return Object.keys(condition);
}

function testLeaf(value: FeatureValue | undefined, test: LeafTest): boolean {
  if (Array.isArray(test)) return value !== undefined && test.includes(value);
  if (typeof test === 'object') {
    if (typeof value !== 'number') return false;
    return 'gte' in test ? value >= test.gte : value <= test.lte;
  }
  return value === test;
}

export function evaluateCondition(condition: Condition, features: Features): boolean {
  if ('all' in condition && Array.isArray(condition.all)) return (condition.all as Condition[]).every((c) => evaluateCondition(c, features));
  if ('any' in condition && Array.isArray(condition.any)) return (condition.any as Condition[]).some((c) => evaluateCondition(c, features));
  if ('not' in condition && typeof condition.not === 'object' && !Array.isArray(condition.not)) {
    return !evaluateCondition(condition.not as Condition, features);
  }
  const [name, test] = Object.entries(condition)[0] as [string, LeafTest];
  return testLeaf(features[name], test);
}

export interface RuleOutcome {
  /** Every firing rule, deciding one first, then by priority (ties by id). */
  fired: Rule[];
  deciding: Rule;
}

/**
 * Fires every rule whose condition holds and picks the highest priority. The rule set must be
 * complete (some rule fires for every pair); a gap is a bug in data/rules.yaml, reported as such.
 */
export function applyRules(rules: readonly Rule[], features: Features): RuleOutcome {
  const fired = rules
    .filter((rule) => evaluateCondition(rule.when, features))
    .sort((a, b) => b.priority - a.priority || a.id.localeCompare(b.id));
  const deciding = fired[0];
  if (!deciding) {
    throw new Error(`Internal error: no relevance rule fires for features ${JSON.stringify(features)}; data/rules.yaml must cover every pair`);
  }
  return { fired, deciding };
}
