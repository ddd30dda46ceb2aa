// Golden tests: what `validate` reports without running anything, for mistakes that used to pass
// validation and fail at run time. Column numbers are derived in the comments.
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../pipeline/config/load.ts';
import { formatDiagnostics } from '../../pipeline/diagnostics.ts';
import { builtinStages } from '../../stages/registry.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'pipeline-stage-checks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function validate(name: string, yaml: string, overrides: string[] = []): Promise<string> {
  writeFileSync(path.join(dir, `${name}.yaml`), yaml);
  const result = await loadConfig(`${name}.yaml`, { overrides, registry: builtinStages, cwd: dir });
  return result.ok ? 'ok' : formatDiagnostics(result.diagnostics);
}

// world -> kg -> icl -> cot -> sft: every kind grpo reads is made by some stage.
const UPSTREAM = [
  'name: x',
  'stages:',
  '  world: { uses: world }',
  '  kg: { uses: kg, needs: [world] }',
  '  icl: { uses: icl, needs: [world, kg] }',
  '  cot: { uses: cot, needs: [icl, kg] }',
  '  sft: { uses: sft, needs: [cot, icl] }',
];

describe('checks validate runs before anything is built', () => {
  it('a stage whose needs lack an input kind it reads', async () => {
    // Line 9 is "    needs: [sft, icl]": 4 spaces and "needs: " put the list at column 12, 10 characters wide.
    const yaml = [...UPSTREAM, '  rl:', '    uses: grpo', '    needs: [sft, icl]', ''].join('\n');
    expect(await validate('kinds', yaml)).toBe(
      [
        'kinds.yaml:10:12: error: stages.rl.needs: grpo reads an input of kind "kg" (made by kg), which its needs do not give; they give sft (checkpoint), icl (prompts)',
        ' 10 |     needs: [sft, icl]',
        '    |            ^^^^^^^^^^',
        '1 error',
      ].join('\n'),
    );
  });

  it("an exec stage's kind is the one its params say (a trainer writing a checkpoint)", async () => {
    const grpo = ['  rl:', '    uses: grpo', '    needs: [trainer, icl, kg]', ''];
    const trainer = (produces: string) => `  trainer: { uses: exec, needs: [cot], with: { command: 'true', produces: ${produces} } }`;
    expect(await validate('exec-checkpoint', [...UPSTREAM, trainer('checkpoint'), ...grpo].join('\n'))).toBe('ok');
    expect(await validate('exec-files', [...UPSTREAM, trainer('files'), ...grpo].join('\n'))).toMatch(
      /error: stages\.rl\.needs: grpo reads an input of kind "checkpoint" \(made by sft\), which its needs do not give; they give trainer \(files\), icl \(prompts\), kg \(kg\)/,
    );
  });

  it('a missing data file, located at its value or at the --set that gave it', async () => {
    // "  imp: { uses: import, with: { path: " is 37 characters: the value starts at column 38.
    const yaml = 'name: x\nstages:\n  imp: { uses: import, with: { path: ./nope.csv, labels: { scale: esci } } }\n';
    expect(await validate('data', yaml)).toBe(
      [
        `data.yaml:3:38: error: stages.imp.with.path: file not found: ./nope.csv (looked for ${path.join(dir, 'nope.csv')})`,
        ' 3 |   imp: { uses: import, with: { path: ./nope.csv, labels: { scale: esci } } }',
        '   |                                      ^^^^^^^^^^',
        '1 error',
      ].join('\n'),
    );
    expect(await validate('data-set', yaml, ['stages.imp.with.path=other.csv'])).toBe(
      `--set stages.imp.with.path=other.csv: error: stages.imp.with.path: file not found: other.csv (looked for ${path.join(dir, 'other.csv')})\n1 error`,
    );
  });

  it('an unknown built-in reward, a missing reward file and one that does not compile', async () => {
    writeFileSync(path.join(dir, 'broken.ts'), 'export default (batch) => batch.map(() => 1;\n');
    // "        - { use: " is 17 characters: each value starts at column 18.
    const rewards = ['        - { use: lable }', '        - { use: ./missing.ts }', '        - { use: ./broken.ts }'];
    const yaml = [...UPSTREAM, '  rl:', '    uses: grpo', '    needs: [sft, icl, kg]', '    with:', '      rewards:', ...rewards, ''].join('\n');
    expect(await validate('rewards', yaml)).toBe(
      [
        'rewards.yaml:13:18: error: stages.rl.with.rewards[0].use: unknown reward "lable": built-ins are format, label, label_distance, steps; a file path starts with ./',
        ` 13 | ${rewards[0]}`,
        '    |                  ^^^^^',
        `rewards.yaml:14:18: error: stages.rl.with.rewards[1].use: file not found: ./missing.ts (looked for ${path.join(dir, 'missing.ts')})`,
        ` 14 | ${rewards[1]}`,
        '    |                  ^^^^^^^^^^^^',
        // Checked by transpiling the file, without running it: the compiler's located message.
        // "export default (batch) => batch.map(() => 1" is 43 characters: the ";" is column 44.
        `rewards.yaml:15:18: error: stages.rl.with.rewards[2].use: reward ./broken.ts: does not compile at ${path.join(dir, 'broken.ts')}:1:44: Expected ")" but found ";"`,
        ` 15 | ${rewards[2]}`,
        '    |                  ^^^^^^^^^^^',
        '3 errors',
      ].join('\n'),
    );
  });

  it('every cycle, not only the first', async () => {
    // "  a: { uses: exec, needs: [" is 27 characters: the need starts at column 28.
    const yaml = ['name: x', 'stages:', ...['a: b', 'b: a', 'c: d', 'd: c'].map((edge) => {
      const [stage, need] = edge.split(': ');
      return `  ${stage}: { uses: exec, needs: [${need}], with: { command: echo } }`;
    }), ''].join('\n');
    const text = await validate('cycles', yaml);
    expect(text.split('\n').filter((line) => line.includes('error:'))).toEqual([
      'cycles.yaml:3:28: error: stages: cycle: a -> b -> a',
      'cycles.yaml:5:28: error: stages: cycle: c -> d -> c',
    ]);
    expect(text).toContain('  cycles.yaml:6:28: note: d needs c');
  });

  it("the README's reward example validates inside a full pipeline", async () => {
    const readme = readFileSync(path.resolve(import.meta.dirname, '../../README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Writing a reward'));
    const snippet = /```yaml\n([\s\S]*?)```/.exec(section)?.[1] as string;
    // The snippet names ./examples/rewards/...: relative to the config, so the folder is linked beside it.
    symlinkSync(path.resolve(import.meta.dirname, '../../examples'), path.join(dir, 'examples'));
    const dpo = ['  sample: { uses: sample, needs: [sft, icl, kg] }', '  dpo: { uses: dpo, needs: [sft, sample] }'];
    const yaml = [...UPSTREAM, ...dpo, ...snippet.trimEnd().split('\n').map((line) => `  ${line}`), ''].join('\n');
    expect(await validate('readme', yaml)).toBe('ok');
  });
});
