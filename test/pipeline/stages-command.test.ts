import { describe, expect, it } from 'vitest';
import { stagesCommand } from '../../pipeline/commands/stages.ts';
import { builtinStages } from '../../stages/registry.ts';

async function printed(): Promise<string[]> {
  const lines: string[] = [];
  await stagesCommand({ out: (text) => lines.push(text), err: (text) => lines.push(text), cwd: '.', stages: builtinStages });
  return lines;
}

describe('pipeline stages', () => {
  it('marks as required exactly the params a stage refuses to go without', async () => {
    const lines = await printed();
    for (const type of builtinStages) {
      const start = lines.findIndex((line) => line.startsWith(`${type.name} (v`));
      const end = lines.findIndex((line, i) => i > start && !line.startsWith('  '));
      const params = lines.slice(start + 1, end < 0 ? undefined : end);
      const shownRequired = params.filter((line) => /^ {2}\w+ \(.*, required\)/.test(line)).map((line) => line.trim().split(' ')[0]);
      // Independently: the keys the schema reports missing when given nothing at all.
      const parsed = type.params.safeParse({});
      const missing = parsed.success ? [] : parsed.error.issues.filter((i) => i.path.length === 1).map((i) => String(i.path[0]));
      expect(shownRequired.sort(), type.name).toEqual([...new Set(missing)].sort());
    }
  });

  it('shows optional params as optional, defaulted ones with their default', async () => {
    const lines = await printed();
    const importAt = lines.findIndex((line) => line.startsWith('import (v'));
    const importParams = lines.slice(importAt + 1).filter((line, i, all) => all.slice(0, i + 1).every((l) => l.startsWith('  ')));
    expect(importParams.find((line) => line.startsWith('  split_seed '))).toMatch(/^ {2}split_seed \(integer, optional\)/);
    expect(importParams.find((line) => line.startsWith('  path '))).toMatch(/^ {2}path \(string, required\)/);
    expect(lines.find((line) => line.startsWith('  epochs ') && line.includes('prompts_per_step'))).toMatch(/, optional\)/);
  });
});
