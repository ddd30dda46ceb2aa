import { describe, expect, it } from 'vitest';
import { configValue, parseConfigYaml } from '../../pipeline/config/yaml-text.ts';

describe('the config YAML phase', () => {
  it('a config with thousands of keys parses whole, and its one duplicate key is found at its line', () => {
    const stages = 3000;
    const lines = ['name: big', 'stages:', ...Array.from({ length: stages }, (_, i) => `  s${i}: { uses: exec, with: { command: echo ${i} } }`)];
    lines.push('  s5: { uses: exec, with: { command: again } }');
    const text = `${lines.join('\n')}\n`;
    const parsed = parseConfigYaml('big.yaml', text);
    expect(parsed.fatal).toEqual([]);
    // s5 is written on line 8 (2 header lines, then s0 on line 3); the repeat is the file's last line.
    expect(parsed.diagnostics.map((d) => d.message)).toEqual(['duplicate key "s5" (first at line 8): a map may name a key once']);
    const at = parsed.diagnostics[0]?.location;
    expect(at && 'start' in at ? parsed.sourceFile.lines.linePos(at.start as number) : undefined).toEqual({ line: stages + 3, col: 3 });
    const value = configValue(parsed.doc, parsed.sourceFile) as { value: { stages: Record<string, { with: { command: string } }> } };
    expect(Object.keys(value.value.stages)).toHaveLength(stages);
    expect(value.value.stages.s2999?.with.command).toBe('echo 2999');
  });

  it('keys equal as written in different maps, or in nested maps, are not duplicates', () => {
    const parsed = parseConfigYaml('ok.yaml', 'a: { x: 1, y: { x: 2 } }\nb: { x: 1 }\n');
    expect(parsed.diagnostics).toEqual([]);
  });
});
