import { describe, expect, it } from 'vitest';
import { renderCompletion, STEP_NAMES } from '../../stages/lib/completion.ts';
import { groupsToReplay, hintedMessages } from '../../stages/grpo/train.ts';
import { stepSpans, tokenStepIndices } from '../../stages/grpo/token-steps.ts';
import type { PromptRecord } from '../../stages/lib/relevance/prompts.ts';

const COMPLETION = renderCompletion(
  {
    query: { product: 'boots', constraints: { gender: 'men' }, intent: '' },
    item: { product: 'boots', category: ['Shoes'], attributes: { gender: 'women' } },
    category: { relation: 'match', path: '' },
    attributes: { gender: 'conflict' },
    rules: ['R-GENDER'],
  },
  'L2',
);

/** A character-level "tokenizer": token i is the char code, so token positions are char positions. */
const charTokens = (text: string) => [...text].map((c) => c.charCodeAt(0));
const decodeChars = (ids: number[]) => String.fromCharCode(...ids);

describe('token -> reasoning step mapping', () => {
  it('finds the five step lines inside <think>, in order', () => {
    const spans = stepSpans(COMPLETION);
    expect(spans.map((s) => s.step)).toEqual([0, 1, 2, 3, 4]);
    // Each span is exactly its line with the newline: the text it covers starts with the step name.
    spans.forEach((s) => expect(COMPLETION.slice(s.start, s.end)).toMatch(new RegExp(`^${STEP_NAMES[s.step]}: .*\\n$`)));
  });

  it('gives each token the step of the line it starts in, and K outside every step', () => {
    const tokens = charTokens(COMPLETION);
    const steps = tokenStepIndices(tokens, decodeChars);
    const at = (needle: string) => steps[COMPLETION.indexOf(needle)];
    expect(at('<think>')).toBe(5);
    expect(at('query:')).toBe(0);
    expect(at('item:')).toBe(1);
    expect(at('category: match')).toBe(2);
    expect(at('attributes: gender: conflict')).toBe(3);
    expect(at('R-GENDER')).toBe(4);
    expect(at('<answer>')).toBe(5);
    // Every character of the rules line (including its newline) maps to step 4: "rules: R-GENDER\n" is 16.
    expect(steps.filter((s) => s === 4)).toHaveLength('rules: R-GENDER\n'.length);
  });

  it('places a multi-character token by its first character', () => {
    // Tokens: "<think>\n", "query: a; constraints: none; intent: none\n", "</think>" as three tokens.
    const pieces = ['<think>\n', 'query: a; constraints: none; intent: none\n', '</think>'];
    const decode = (ids: number[]) => ids.map((i) => pieces[i]).join('');
    expect(tokenStepIndices([0, 1, 2], decode)).toEqual([5, 0, 5]);
  });

  it('maps everything to the outcome index when there is no <think> block', () => {
    expect(tokenStepIndices(charTokens('<answer>L3</answer>'), decodeChars).every((s) => s === 5)).toBe(true);
  });
});

describe('adaptive guided replay', () => {
  it('picks groups below the threshold, least accurate first, at most share of the batch', () => {
    // 8 groups, share 0.25 -> at most 2; below 0.5 are groups 1 (0.25), 3 (0), 6 (0.25) -> 3, then 1.
    expect(groupsToReplay([1, 0.25, 0.75, 0, 0.5, 1, 0.25, 0.5], 0.5, 0.25)).toEqual([3, 1]);
    // At least one group when any qualifies, even if share x groups rounds to 0.
    expect(groupsToReplay([0, 1], 0.5, 0.1)).toEqual([0]);
    expect(groupsToReplay([0, 0], 0, 1)).toEqual([]);
  });

  it('adds the gold grade and the deciding rules to the user turn only', () => {
    const record = {
      id: 'q1-i1',
      messages: [
        { role: 'system', content: 'You judge relevance.' },
        { role: 'user', content: 'Query: boots men' },
      ],
      example: { id: 'q1-i1', query: 'boots men', item: { title: 't', category: [], attributes: {} }, label: 'L2', meta: { capabilities: [], difficulty: 'easy', rules: ['R-GENDER'], source: 'world' } },
      facts: [],
    } as PromptRecord;
    const hinted = hintedMessages(record);
    expect(hinted[0]).toEqual(record.messages[0]);
    expect(hinted[1]?.content).toBe('Query: boots men\nHint: the correct grade is L2; the deciding rules are R-GENDER.');
  });
});
