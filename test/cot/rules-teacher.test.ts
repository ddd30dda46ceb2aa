import { describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import { rulesTeacher } from '../../stages/cot/rules-teacher.ts';
import { parseCompletion, verifyCompletion } from '../../stages/lib/relevance/completion.ts';
import { analyzePair, toReasoningSteps } from '../../stages/lib/relevance/analysis.ts';
import type { RelevanceExample } from '../../stages/lib/relevance/types.ts';
import { builtinGraph, smallWorld } from '../data/fixtures.ts';

const kg = builtinGraph();
const examples: RelevanceExample[] = Object.values(smallWorld().splits).flat();
const generalRules = new Set(kg.knowledge.rules.filter((r) => r.general).map((r) => r.id));

function accepted(context: 'plain' | 'kg' | 'rules', noise = 0): Set<string> {
  const teacher = rulesTeacher(kg, { noise });
  const rng = new Rng(1, context);
  return new Set(
    examples
      .filter((x) => {
        const reference = toReasoningSteps(analyzePair(x.query, x.item, kg));
        return verifyCompletion(parseCompletion(teacher.write(x, context, rng)), reference, x.label).accepted;
      })
      .map((x) => x.id),
  );
}

describe('rules teacher', () => {
  it('with every rule and the whole graph, every rationale verifies against the gold', () => {
    expect(examples.length).toBeGreaterThan(500);
    expect(accepted('rules').size).toBe(examples.length);
  });

  it('without the business rules, it gets exactly the examples that only general rules decide', () => {
    // The teacher then knows only the grade definitions (`general: true`): an example passes iff every
    // rule that fires for it is general, since then both the rules step and the grade are unchanged.
    const onlyGeneral = examples.filter((x) => x.meta.rules.every((id) => generalRules.has(id))).map((x) => x.id);
    expect(onlyGeneral.length).toBeGreaterThan(0);
    expect(onlyGeneral.length).toBeLessThan(examples.length);
    expect([...accepted('kg')].sort()).toEqual(onlyGeneral.sort());
  });

  it('without the lexicon it also fails examples that need synonyms or colloquial names', () => {
    const plain = accepted('plain');
    const kgRound = accepted('kg');
    for (const id of plain) expect(kgRound.has(id)).toBe(true);
    const knowledge = examples.filter((x) => kgRound.has(x.id) && x.meta.capabilities.includes('knowledge'));
    expect(knowledge.some((x) => !plain.has(x.id))).toBe(true);
  });

  it('noise shifts the grade of about that share of rationales, so rejection sampling catches them', () => {
    // With noise 0.3 each rationale's grade moves by one with probability 0.3: the accepted share
    // is 0.7 ± 3 standard errors (sqrt(0.21 / n)).
    const share = accepted('rules', 0.3).size / examples.length;
    const tolerance = 3 * Math.sqrt(0.21 / examples.length);
    expect(Math.abs(share - 0.7)).toBeLessThan(tolerance);
  });
});
