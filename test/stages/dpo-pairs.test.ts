import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import { buildPairs } from '../../stages/dpo/pairs.ts';
import { readSampledPrompts, type SampledPrompt, type SampleRecord } from '../../stages/lib/artifacts/samples.ts';
import { passKs } from '../../stages/sample/index.ts';

function sample(text: string, correct: boolean, stepsVerified = 0): SampleRecord {
  return { text, label: null, format_ok: true, steps_verified: stepsVerified, correct, accepted: correct && stepsVerified === 5, tokens: 1, finish_reason: 'stop' };
}

function prompt(id: string, samples: SampleRecord[]): SampledPrompt {
  const correct = samples.filter((s) => s.correct).length;
  return { id, messages: [{ role: 'user', content: id }], example: {} as SampledPrompt['example'], facts: [], samples, correct, pass_rate: correct / samples.length };
}

describe('DPO preference pairs', () => {
  const prompts = [
    // Mixed: the fully verified correct sample is chosen over the one with fewer verified steps.
    prompt('mixed', [sample('ok-3-steps', true, 3), sample('wrong-a', false), sample('ok-verified', true, 5), sample('wrong-b', false)]),
    // None correct: the teacher's CoT is chosen.
    prompt('hard', [sample('wrong-c', false), sample('wrong-c', false)]),
    // All correct: nothing to reject.
    prompt('easy', [sample('ok', true, 5), sample('ok', true, 5)]),
    // None correct and no teacher rationale: no pair, counted.
    prompt('orphan', [sample('wrong-d', false)]),
  ];
  const teacher = new Map([['hard', 'teacher-cot']]);

  it('chooses a correct sample (best verified first), else the teacher CoT; counts what gave no pair', () => {
    const { pairs, counts } = buildPairs(prompts, teacher, 1, new Rng(1));
    expect(pairs.map((p) => [p.id, p.chosen, p.chosenFrom])).toEqual([
      ['mixed', 'ok-verified', 'sample'],
      ['hard', 'teacher-cot', 'teacher'],
    ]);
    expect(['wrong-a', 'wrong-b']).toContain(pairs[0]?.rejected);
    expect(pairs[1]?.rejected).toBe('wrong-c');
    expect(counts).toEqual({ prompts: 4, fromSamples: 1, fromTeacher: 1, allCorrect: 1, noChosen: 1 });
  });

  it('draws distinct rejected texts up to pairs_per_prompt, cycling through the chosen ones', () => {
    const { pairs } = buildPairs(prompts, teacher, 3, new Rng(1));
    const mixed = pairs.filter((p) => p.id === 'mixed');
    // Two distinct wrong texts, so two pairs, not three; chosen cycles best first.
    expect(mixed.map((p) => p.rejected).sort()).toEqual(['wrong-a', 'wrong-b']);
    expect(mixed.map((p) => p.chosen)).toEqual(['ok-verified', 'ok-3-steps']);
    // 'hard' has one distinct wrong text (duplicates collapse).
    expect(pairs.filter((p) => p.id === 'hard')).toHaveLength(1);
  });

  it('is deterministic for a seed', () => {
    expect(buildPairs(prompts, teacher, 2, new Rng(7)).pairs).toEqual(buildPairs(prompts, teacher, 2, new Rng(7)).pairs);
  });
});

describe('sample: pass@k curve', () => {
  it('reports k = 1, 2, 4, ... and n itself', () => {
    expect(passKs(8)).toEqual([1, 2, 4, 8]);
    expect(passKs(6)).toEqual([1, 2, 4, 6]);
    expect(passKs(1)).toEqual([1]);
  });
});

describe('reading a samples artifact', () => {
  it('names the file, line and key of a bad record', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'samples-'));
    try {
      const good = { id: 'a', messages: [{ role: 'user', content: 'q' }], example: { query: 'q', label: 'L3', meta: { rules: [] } }, facts: [], samples: [{ text: 't', correct: true }] };
      const badLabel = { ...good, example: { ...good.example, label: 'L5' } };
      const badSample = { ...good, samples: [{ text: 't', correct: true }, { text: 7, correct: false }] };
      writeFileSync(path.join(dir, 'train.jsonl'), `${JSON.stringify(good)}\n\n${JSON.stringify(badLabel)}\n`);
      await expect(readSampledPrompts(dir, 'train')).rejects.toThrow(`${path.join(dir, 'train.jsonl')}:3: example.label: expected one of L1, L2, L3, L4, got "L5"`);
      writeFileSync(path.join(dir, 'train.jsonl'), `${JSON.stringify(badSample)}\n`);
      await expect(readSampledPrompts(dir, 'train')).rejects.toThrow(':1: samples.1: expected { text: string, correct: boolean, ... }');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
