/**
 * The built-in teacher: writes each example's chain of thought from the knowledge graph and the
 * business rules, offline. What it may use depends on the round's context, which is how
 * progressive synthesis (LORE §3) plays out without an LLM:
 *
 * - `plain`: no knowledge-graph lexicon (synonyms, colloquial names, misspellings, implicit needs)
 *   and only the general grade definitions, not the business rules;
 * - `kg`: the whole graph, still only the general rules;
 * - `rules`: the whole graph and every business rule;
 * - `gold`: rationalisation (STaR's last resort, LORE's final round): the teacher is told the gold
 *   grade and explains it from the evidence, i.e. writes the analysis's steps (every one of which
 *   the evidence supports) and the gold grade. Human grades that the rules would not give (a phone
 *   case whose title is a bare model code) get a rationale this way, so no grade is starved.
 *
 * So a `plain` round gets knowledge-heavy and rule-decided examples wrong, and rejection sampling
 * sends them to the later rounds, as the paper's rounds do with a real teacher.
 */
import type { Rng } from '../../pipeline/api.ts';
import { renderCompletion, type RenderOptions, type ReasoningSteps } from '../lib/relevance/completion.ts';
import { analyzePair, toReasoningSteps, type PairAnalysis } from '../lib/relevance/analysis.ts';
import { KnowledgeGraph } from '../lib/relevance/kg.ts';
import { evaluateCondition } from '../lib/relevance/rules.ts';
import { GRADES, type Grade, type RelevanceExample } from '../lib/relevance/types.ts';

export type RoundContext = 'plain' | 'kg' | 'rules' | 'gold';

const RELATION_GRADE: Record<PairAnalysis['category']['relation'], Grade> = { match: 'L3', related: 'L2', mismatch: 'L1' };

/** The graph without its lexicon: product and value names only, no aliases or needs. */
export function withoutLexicon(kg: KnowledgeGraph): KnowledgeGraph {
  return new KnowledgeGraph(
    { ...kg.knowledge, productAliases: [], valueAliases: [], needs: [] },
    kg.triples.filter((t) => t.p !== 'synonym-of'),
  );
}

export interface RulesTeacher {
  write(example: RelevanceExample, context: RoundContext, rng: Rng): string;
}

/**
 * `noise` is the probability that a rationale's grade is shifted by one (an ablation knob: how
 * much does rejection sampling save when the teacher is sloppy).
 */
export function rulesTeacher(kg: KnowledgeGraph, options: RenderOptions & { noise: number }): RulesTeacher {
  const plainKg = withoutLexicon(kg);
  const generalRules = kg.knowledge.rules.filter((rule) => rule.general);

  function reason(example: RelevanceExample, context: RoundContext): { steps: ReasoningSteps; grade: Grade } {
    const analysis: PairAnalysis = analyzePair(example.query, example.item, context === 'plain' ? plainKg : kg);
    const steps = toReasoningSteps(analysis);
    if (context === 'rules') return { steps, grade: analysis.grade };
    if (context === 'gold') return { steps, grade: example.label };
    // Without the business rules the teacher knows only the grade definitions; where none of them
    // fires it grades by the category relation alone, as a rule-unaware annotator would.
    const fired = generalRules
      .filter((rule) => evaluateCondition(rule.when, analysis.features))
      .sort((a, b) => b.priority - a.priority || a.id.localeCompare(b.id));
    const grade = fired[0]?.grade ?? RELATION_GRADE[analysis.category.relation];
    return { steps: { ...steps, rules: fired.map((rule) => rule.id) }, grade };
  }

  return {
    write(example, context, rng) {
      const { steps, grade } = reason(example, context);
      let label = grade;
      if (options.noise > 0 && rng.next() < options.noise) {
        const index = GRADES.indexOf(grade);
        label = GRADES[index === 0 ? 1 : index === GRADES.length - 1 ? index - 1 : index + (rng.next() < 0.5 ? -1 : 1)] as Grade;
      }
      return renderCompletion(steps, label, options);
    },
  };
}
