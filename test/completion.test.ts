import { describe, expect, it } from 'vitest';
import {
  parseCompletion,
  renderCompletion,
  verifyCompletion,
  type ReasoningSteps,
} from '../stages/lib/relevance/completion.ts';

const reference: ReasoningSteps = {
  query: { product: 'hiking boots', constraints: { gender: 'men', material: '!leather' }, intent: 'outdoor walking' },
  item: {
    product: 'hiking boots',
    category: ['Shoes', 'Outdoor', 'Hiking Boots'],
    attributes: { gender: 'women', material: 'leather', colour: 'navy blue' },
  },
  category: { relation: 'match', path: 'hiking boots is-a boots' },
  attributes: { gender: 'conflict', material: 'conflict' },
  rules: ['R-GENDER'],
};

describe('renderCompletion', () => {
  it('writes the docs/design.md §2 layout, lists sorted and comma-separated', () => {
    expect(renderCompletion(reference, 'L2')).toBe(
      [
        '<think>',
        'query: hiking boots; constraints: gender=men, material=!leather; intent: outdoor walking',
        'item: hiking boots; category: Shoes > Outdoor > Hiking Boots; attributes: colour=navy blue, gender=women, material=leather',
        'category: match (hiking boots is-a boots)',
        'attributes: gender: conflict, material: conflict',
        'rules: R-GENDER',
        '</think>',
        '<answer>L2</answer>',
      ].join('\n'),
    );
  });

  it('puts the answer first when asked (post-CoT)', () => {
    const text = renderCompletion(reference, 'L2', { answerFirst: true });
    expect(text.startsWith('<answer>L2</answer>\n<think>\n')).toBe(true);
    expect(parseCompletion(text).formatOk).toBe(true);
  });

  it('writes "none" for empty lists and intent', () => {
    const bare: ReasoningSteps = { ...reference, query: { product: 'mug', constraints: {}, intent: '' }, attributes: {}, rules: [] };
    const text = renderCompletion(bare, 'L4');
    expect(text).toContain('query: mug; constraints: none; intent: none');
    expect(text).toContain('attributes: none\nrules: none');
  });
});

describe('parseCompletion', () => {
  it('round-trips a rendered completion exactly', () => {
    const parsed = parseCompletion(renderCompletion(reference, 'L2'));
    expect(parsed.errors).toEqual([]);
    expect(parsed.label).toBe('L2');
    expect(parsed.steps).toEqual(reference);
  });

  it('keeps the steps it can read when the output stops early', () => {
    const text = renderCompletion(reference, 'L2').split('\n').slice(0, 4).join('\n');
    const parsed = parseCompletion(text);
    expect(parsed.formatOk).toBe(false);
    expect(parsed.steps.query?.product).toBe('hiking boots');
    expect(parsed.steps.category?.relation).toBe('match');
    expect(parsed.errors).toEqual(['unclosed_think', 'missing_answer', 'missing_step:attributes', 'missing_step:rules']);
  });

  it('names malformed steps, bad labels, duplicates and trailing text', () => {
    const text = [
      '<think>',
      'query: hiking boots; constraints: gender men; intent: none', // no '=': malformed
      'item: hiking boots; category: Shoes; attributes: none',
      'category: identical', // not a relation
      'attributes: gender: maybe', // not a verdict
      'rules: none',
      'rules: R-X',
      '</think>',
      '<answer>L5</answer> thanks',
    ].join('\n');
    const parsed = parseCompletion(text);
    expect(parsed.errors).toEqual([
      'invalid_label',
      'malformed_step:query',
      'malformed_step:category',
      'malformed_step:attributes',
      'duplicate_step:rules',
      'trailing_text',
    ]);
    expect(parsed.label).toBeUndefined();
    expect(parsed.steps.rules).toEqual([]);
  });

  it('reports steps out of order once', () => {
    const lines = renderCompletion(reference, 'L2').split('\n');
    [lines[1], lines[5]] = [lines[5] as string, lines[1] as string];
    expect(parseCompletion(lines.join('\n')).errors).toEqual(['wrong_order']);
  });

  it('reports a missing think block and an answer given twice', () => {
    const parsed = parseCompletion('<answer>L1</answer><answer>L2</answer>');
    expect(parsed.errors).toEqual(['missing_think', 'multiple_answers']);
    expect(parsed.label).toBe('L1');
  });
});

describe('verifyCompletion', () => {
  it('accepts the reference itself, whatever the case and spacing', () => {
    const text = renderCompletion(reference, 'L2').replace('Hiking Boots;', 'hiking   boots;');
    const verdict = verifyCompletion(parseCompletion(text), reference, 'L2');
    expect(verdict).toMatchObject({ stepsVerified: 5, labelCorrect: true, formatOk: true, accepted: true });
  });

  it('fails exactly the steps that differ', () => {
    const wrong: ReasoningSteps = {
      ...reference,
      attributes: { gender: 'match', material: 'conflict' },
      rules: [],
    };
    const verdict = verifyCompletion(parseCompletion(renderCompletion(wrong, 'L3')), reference, 'L2');
    expect(verdict.steps).toEqual({ query: true, item: true, category: true, attributes: false, rules: false });
    expect(verdict.stepsVerified).toBe(3);
    expect(verdict.labelCorrect).toBe(false);
    expect(verdict.accepted).toBe(false);
  });

  it('judges the category step on its relation, not its evidence path', () => {
    const otherPath: ReasoningSteps = { ...reference, category: { relation: 'match', path: 'boots has-subtype hiking boots' } };
    const verdict = verifyCompletion(parseCompletion(renderCompletion(otherPath, 'L2')), reference, 'L2');
    expect(verdict.steps.category).toBe(true);
  });

  it('does not accept a right grade with a broken format', () => {
    const verdict = verifyCompletion(parseCompletion('<answer>L2</answer>'), reference, 'L2');
    expect(verdict).toMatchObject({ labelCorrect: true, formatOk: false, stepsVerified: 0, accepted: false });
  });
});
