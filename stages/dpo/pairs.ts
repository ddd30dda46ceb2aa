/**
 * Preference pairs from pass@N samples (TaoSR1 §DPO): chosen is a correct sample, rejected an
 * incorrect one; where no sample is correct the teacher's verified chain of thought is chosen, so
 * the hardest prompts still teach something. Prompts whose samples are all correct give no pair.
 */
import type { Rng } from '../../pipeline/api.ts';
import { balancedDraw, type GradeBalance } from '../lib/relevance/grade-balance.ts';
import type { ChatMessage } from '../lib/relevance/prompts.ts';
import type { Grade } from '../lib/relevance/types.ts';
import type { SampledPrompt, SampleRecord } from '../lib/artifacts/samples.ts';

export interface PreferencePair {
  id: string;
  messages: ChatMessage[];
  chosen: string;
  rejected: string;
  chosenFrom: 'sample' | 'teacher';
  /** The prompt's gold grade. */
  grade: Grade;
}

export interface PairCounts {
  prompts: number;
  fromSamples: number;
  fromTeacher: number;
  /** Every sample correct: nothing to reject. */
  allCorrect: number;
  /** No sample correct and no teacher rationale for the prompt. */
  noChosen: number;
}

/** Best first: fully verified reasoning, then more verified steps. */
function byQuality(a: SampleRecord, b: SampleRecord): number {
  return Number(b.accepted) - Number(a.accepted) || b.steps_verified - a.steps_verified;
}

function distinctTexts(samples: readonly SampleRecord[]): SampleRecord[] {
  const seen = new Set<string>();
  return samples.filter((s) => !seen.has(s.text) && seen.add(s.text));
}

/**
 * Up to `perPrompt` pairs per prompt. Chosen samples go best first; rejected ones are drawn at
 * random (with `rng`) among the distinct incorrect texts, so one deterministic seed gives one set.
 */
export function buildPairs(
  prompts: readonly SampledPrompt[],
  teacher: ReadonlyMap<string, string>,
  perPrompt: number,
  rng: Rng,
): { pairs: PreferencePair[]; counts: PairCounts } {
  const counts: PairCounts = { prompts: prompts.length, fromSamples: 0, fromTeacher: 0, allCorrect: 0, noChosen: 0 };
  const pairs: PreferencePair[] = [];
  for (const prompt of prompts) {
    const correct = distinctTexts(prompt.samples.filter((s) => s.correct)).sort(byQuality);
    const wrong = rng.shuffle(distinctTexts(prompt.samples.filter((s) => !s.correct)));
    if (wrong.length === 0) {
      counts.allCorrect++;
      continue;
    }
    const fromTeacher = correct.length === 0;
    const chosen = fromTeacher ? (teacher.has(prompt.id) ? [teacher.get(prompt.id) as string] : []) : correct.map((s) => s.text);
    if (chosen.length === 0) {
      counts.noChosen++;
      continue;
    }
    const n = Math.min(perPrompt, wrong.length);
    for (let i = 0; i < n; i++) {
      pairs.push({
        id: prompt.id,
        messages: prompt.messages,
        chosen: chosen[i % chosen.length] as string,
        rejected: (wrong[i] as SampleRecord).text,
        chosenFrom: fromTeacher ? 'teacher' : 'sample',
        grade: prompt.example?.label,
      });
    }
    if (fromTeacher) counts.fromTeacher++;
    else counts.fromSamples++;
  }
  return { pairs, counts };
}

/**
 * With the grade balance SFT chose (recorded in the RL pool), as many pairs as were built, drawn
 * weighted by their prompts' gold grades (stages/lib/relevance/grade-balance.ts): the pairs of a
 * model that errs mostly on the rare grades keep their share, those of the majority grade do not
 * crowd them out. Without a balance, the pairs unchanged.
 */
export function balancePairs(pairs: readonly PreferencePair[], balance: GradeBalance | undefined, rng: Rng): readonly PreferencePair[] {
  return balance ? balancedDraw(pairs, (pair) => pair.grade, balance, pairs.length, rng) : pairs;
}
