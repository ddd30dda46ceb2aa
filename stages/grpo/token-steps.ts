/**
 * Which reasoning step each completion token belongs to, for stepwise advantages (SRPO,
 * TaoSR-SHE): a token in the `query:` line gets step 0's advantage, ..., a token outside every step
 * line (the tags, the answer, end of turn) gets the outcome advantage alone (index K).
 *
 * Tokens and characters do not line up one to one (a BPE token may hold "\nitem"), so each token is
 * placed by the character where its text starts: the length of the decoded prefix before it.
 */
import { STEP_NAMES, type StepName } from '../lib/relevance/completion.ts';

export interface StepSpan {
  step: number;
  /** Character range [start, end) of the line, its newline included. */
  start: number;
  end: number;
}

/** The lines of the `<think>` block that open a step (first occurrence of each step name). */
export function stepSpans(text: string): StepSpan[] {
  const thinkStart = text.indexOf('<think>');
  if (thinkStart < 0) return [];
  const closing = text.indexOf('</think>', thinkStart);
  const bodyEnd = closing < 0 ? text.length : closing;
  const spans: StepSpan[] = [];
  const seen = new Set<string>();
  let start = thinkStart + '<think>'.length;
  while (start < bodyEnd) {
    const newline = text.indexOf('\n', start);
    const end = newline < 0 || newline >= bodyEnd ? bodyEnd : newline + 1;
    const name = /^\s*(\w+):/.exec(text.slice(start, end))?.[1];
    if (name && (STEP_NAMES as readonly string[]).includes(name) && !seen.has(name)) {
      seen.add(name);
      spans.push({ step: STEP_NAMES.indexOf(name as StepName), start, end });
    }
    start = end;
  }
  return spans;
}

/**
 * For each token, its step index 0..K-1, or K (= STEP_NAMES.length) outside every step line.
 * `decode` must be the decoding the completion text was made with. Cost: one decode per token.
 */
export function tokenStepIndices(tokens: readonly number[], decode: (ids: number[]) => string): number[] {
  const outside = STEP_NAMES.length;
  const spans = stepSpans(decode([...tokens]));
  if (spans.length === 0) return tokens.map(() => outside);
  let prefixLength = 0;
  return tokens.map((_, i) => {
    const start = prefixLength;
    // Decoded prefixes can shrink by a replacement character when a token ends mid-UTF-8: keep the max.
    prefixLength = Math.max(prefixLength, decode(tokens.slice(0, i + 1)).length);
    return spans.find((s) => start >= s.start && start < s.end)?.step ?? outside;
  });
}
