// Golden tests: the exact text `pipeline validate` prints for bad configs. Each case names the
// mistake; the expected text is what a user should read: file:line:col, the key path, what was
// expected and what was found, the source line and a marker under the offending span.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../pipeline/config/load.ts';
import { formatDiagnostics } from '../../pipeline/diagnostics.ts';
import { builtinStages } from '../../stages/registry.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'pipeline-golden-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function validate(name: string, yaml: string, overrides: string[] = []): Promise<string> {
  writeFileSync(path.join(dir, `${name}.yaml`), yaml);
  const result = await loadConfig(`${name}.yaml`, { overrides, registry: builtinStages, cwd: dir });
  return result.ok ? 'ok' : formatDiagnostics(result.diagnostics);
}

const golden: { name: string; yaml: string; set?: string[]; expected: string }[] = [
  {
    name: 'syntax-error',
    yaml: 'name: x\nstages:\n  a: { uses: exec, with: { command: [echo, hi }\n',
    // The flow list opened at col 37 is never closed; yaml reports it where it gave up (col 47),
    // and the enclosing flow maps then fail too (reported once, not twice).
    expected: [
      'syntax-error.yaml:3:47: error: Flow sequence in block collection must be sufficiently indented and end with a ] (YAML BAD_INDENT)',
      ' 3 |   a: { uses: exec, with: { command: [echo, hi }',
      '   |                                               ^',
      'syntax-error.yaml:3:48: error: Flow map in block collection must be sufficiently indented and end with a } (YAML BAD_INDENT)',
      ' 3 |   a: { uses: exec, with: { command: [echo, hi }',
      '   |                                                ^',
      '2 errors',
    ].join('\n'),
  },
  {
    name: 'unknown-keys',
    yaml: 'name: x\nstages:\n  a:\n    uses: exec\n    with:\n      command: echo\n      comand2: x\n    need: [b]\n',
    // Both typos, in file order, each with its closest valid key and the full list.
    expected: [
      'unknown-keys.yaml:7:7: error: stages.a.with: unknown key "comand2" (did you mean "command"?); expected one of: command, env, cwd, produces, files, inherit_env',
      ' 7 |       comand2: x',
      '   |       ^^^^^^^',
      'unknown-keys.yaml:8:5: error: stages.a: unknown key "need" (did you mean "needs"?); expected one of: uses, needs, with, executor, slurm, resources, seed_offset',
      ' 8 |     need: [b]',
      '   |     ^^^^',
      '2 errors',
    ].join('\n'),
  },
  {
    name: 'wrong-type',
    yaml: 'name: x\nseed: many\nstages:\n  a: { uses: exec, with: { command: 42 } }\n',
    // exec's command is a string or a list of strings; zod's "array" reads as YAML's "list".
    expected: [
      'wrong-type.yaml:2:7: error: seed: expected number, found string "many"',
      ' 2 | seed: many',
      '   |       ^^^^',
      'wrong-type.yaml:4:37: error: stages.a.with.command: expected string or list, found integer 42',
      ' 4 |   a: { uses: exec, with: { command: 42 } }',
      '   |                                     ^^',
      '2 errors',
    ].join('\n'),
  },
  {
    name: 'out-of-range',
    yaml: 'name: x\nseed: -1\nresources: { train: 0 }\nstages:\n  a: { uses: exec, with: { command: echo } }\n',
    expected: [
      'out-of-range.yaml:2:7: error: seed: expected a number >= 0, found integer -1',
      ' 2 | seed: -1',
      '   |       ^^',
      'out-of-range.yaml:3:21: error: resources.train: expected a number >= 1, found integer 0',
      ' 3 | resources: { train: 0 }',
      '   |                     ^',
      '2 errors',
    ].join('\n'),
  },
  {
    name: 'missing-needs',
    yaml: 'name: x\nstages:\n  prep: { uses: exec, with: { command: echo } }\n  train: { uses: exec, needs: [prepp], with: { command: echo } }\n',
    expected: [
      'missing-needs.yaml:4:32: error: stages.train.needs[0]: no stage named "prepp" (did you mean "prep"?)',
      ' 4 |   train: { uses: exec, needs: [prepp], with: { command: echo } }',
      '   |                                ^^^^^',
      '1 error',
    ].join('\n'),
  },
  {
    name: 'cycle',
    yaml: 'name: x\nstages:\n  a: { uses: exec, needs: [c], with: { command: echo } }\n  b: { uses: exec, needs: [a], with: { command: echo } }\n  c: { uses: exec, needs: [b], with: { command: echo } }\n',
    // Found from a (first in YAML): a needs c, c needs b, b needs a; every hop is located.
    expected: [
      'cycle.yaml:3:28: error: stages: cycle: a -> c -> b -> a',
      ' 3 |   a: { uses: exec, needs: [c], with: { command: echo } }',
      '   |                            ^',
      '  cycle.yaml:5:28: note: c needs b',
      '   5 |   c: { uses: exec, needs: [b], with: { command: echo } }',
      '     |                            ^',
      '  cycle.yaml:4:28: note: b needs a',
      '   4 |   b: { uses: exec, needs: [a], with: { command: echo } }',
      '     |                            ^',
      '1 error',
    ].join('\n'),
  },
  {
    name: 'unknown-type',
    yaml: 'name: x\nstages:\n  a: { uses: exce, with: { command: echo } }\n',
    expected: [
      'unknown-type.yaml:3:14: error: stages.a.uses: unknown stage type "exce" (did you mean "exec"?); see `pipeline stages`, or give a path like ./my-stage.ts',
      ' 3 |   a: { uses: exce, with: { command: echo } }',
      '   |              ^^^^',
      '1 error',
    ].join('\n'),
  },
  {
    name: 'bad-set',
    yaml: 'name: x\nstages:\n  a: { uses: exec, with: { command: echo } }\n',
    set: ['stages.b.with.command=ls', 'name.first=1', 'seed', 'seed=abc'],
    // A flag has no line: the flag itself is the location. `seed=abc` is read as YAML, a string.
    expected: [
      '--set stages.b.with.command=ls: error: stages.b.with.command: no stage named "b" (did you mean "a"?)',
      '--set name.first=1: error: name.first: cannot set a key inside "name": it is a scalar, not a map',
      '--set seed: error: expected KEY.PATH=VALUE, e.g. stages.sft.with.learning_rate=3e-4',
      '--set seed=abc: error: seed: expected number, found string "abc"',
      '4 errors',
    ].join('\n'),
  },
  {
    name: 'self-need',
    yaml: 'name: x\nstages:\n  a: { uses: exec, needs: [a], with: { command: echo } }\n  b: { uses: exec, needs: [a], with: { command: echo } }\n',
    // A stage that needs itself is a cycle of one; b, which needs it, is in none.
    expected: ['self-need.yaml:3:28: error: stages: cycle: a -> a', ' 3 |   a: { uses: exec, needs: [a], with: { command: echo } }', '   |                            ^', '1 error'].join('\n'),
  },
  {
    name: 'proto-set',
    yaml: 'name: x\nstages:\n  a: { uses: exec, with: { command: echo } }\n',
    set: ['stages.a.with.env.__proto__=1', 'stages.a.with.constructor=2', 'stages.a.prototype.x=3'],
    // Each would be silently dropped (or set a prototype) once the document is a plain object.
    expected: [
      '--set stages.a.with.env.__proto__=1: error: stages.a.with.env.__proto__: "__proto__" cannot be a key: it names an object\'s prototype machinery, not a setting',
      '--set stages.a.with.constructor=2: error: stages.a.with.constructor: "constructor" cannot be a key: it names an object\'s prototype machinery, not a setting',
      '--set stages.a.prototype.x=3: error: stages.a.prototype.x: "prototype" cannot be a key: it names an object\'s prototype machinery, not a setting',
      '3 errors',
    ].join('\n'),
  },
  {
    name: 'duplicate-stage',
    yaml: 'name: x\nstages:\n  a: { uses: exec, with: { command: echo } }\n  a: { uses: exec, with: { command: ls } }\n',
    expected: [
      'duplicate-stage.yaml:4:3: error: duplicate key "a" (first at line 3): a map may name a key once',
      ' 4 |   a: { uses: exec, with: { command: ls } }',
      '   |   ^',
      '1 error',
    ].join('\n'),
  },
  {
    name: 'duplicate-keys-and-more',
    yaml: 'name: x\nstages:\n  a: { uses: exec, with: { command: echo } }\n  a: { uses: exec, with: { command: ls } }\n  b: { uses: exce }\nseed: 1\nseed: two\n',
    // Every duplicate and every other error; the value checked is the later one (as parsed).
    expected: [
      'duplicate-keys-and-more.yaml:4:3: error: duplicate key "a" (first at line 3): a map may name a key once',
      ' 4 |   a: { uses: exec, with: { command: ls } }',
      '   |   ^',
      'duplicate-keys-and-more.yaml:5:14: error: stages.b.uses: unknown stage type "exce" (did you mean "exec"?); see `pipeline stages`, or give a path like ./my-stage.ts',
      ' 5 |   b: { uses: exce }',
      '   |              ^^^^',
      'duplicate-keys-and-more.yaml:7:1: error: duplicate key "seed" (first at line 6): a map may name a key once',
      ' 7 | seed: two',
      '   | ^^^^',
      'duplicate-keys-and-more.yaml:7:7: error: seed: expected number, found string "two"',
      ' 7 | seed: two',
      '   |       ^^^',
      '4 errors',
    ].join('\n'),
  },
  {
    name: 'alias-bomb',
    // "Billion laughs": each level is 9 aliases of the one above, 9^3 = 729 copies of the first list.
    yaml: [
      'name: x',
      'a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]',
      'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]',
      'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]',
      'd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]',
      'stages:',
      '  s: { uses: exec, with: { command: echo } }',
      '',
    ].join('\n'),
    // Located at the first alias whose anchor holds aliases itself: *b inside c (line 4, col 8).
    expected: [
      'alias-bomb.yaml:4:8: error: alias *b expands too far (Excessive alias count indicates a resource exhaustion attack): an alias bomb? Write the values out, or nest fewer aliases',
      ' 4 | c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]',
      '   |        ^^',
      '1 error',
    ].join('\n'),
  },
  {
    name: 'empty',
    yaml: '',
    expected: ['empty.yaml:1:1: error: the file is empty; expected a map with "name" and "stages"', ' 1 | ', '   | ^', '1 error'].join('\n'),
  },
  {
    name: 'missing-required',
    yaml: 'stages:\n  a: { uses: exec }\n',
    // A missing key is reported at the map that should hold it.
    expected: [
      'missing-required.yaml:1:1: error: missing required key "name" (string)',
      ' 1 | stages:',
      '   | ^^^^^^^',
      'missing-required.yaml:2:6: error: stages.a.with: missing required key "command" (string or list)',
      ' 2 |   a: { uses: exec }',
      '   |      ^^^^^^^^^^^^^^',
      '2 errors',
    ].join('\n'),
  },
  {
    name: 'bad-enum-and-name',
    yaml: 'name: x\nexecutor: slurmm\nstages:\n  1st: { uses: exec, with: { command: echo } }\n',
    expected: [
      'bad-enum-and-name.yaml:2:11: error: executor: expected one of "local", "slurm", found string "slurmm" (did you mean "slurm"?)',
      ' 2 | executor: slurmm',
      '   |           ^^^^^^',
      'bad-enum-and-name.yaml:4:3: error: stages: bad name "1st": expected a letter or "_", then letters, digits, "_" or "-"',
      ' 4 |   1st: { uses: exec, with: { command: echo } }',
      '   |   ^^^',
      '2 errors',
    ].join('\n'),
  },
  {
    // Refs and logs are kept under the name: ".." would put them in the store's root.
    name: 'dot-dot-name',
    yaml: 'name: ..\nstages:\n  a: { uses: exec, with: { command: echo } }\n',
    expected: [
      'dot-dot-name.yaml:1:7: error: name: expected a letter, digit or "_", then letters, digits, "_", "." or "-", found string ".."',
      ' 1 | name: ..',
      '   |       ^^',
      '1 error',
    ].join('\n'),
  },
  {
    name: 'dot-name-from-set',
    yaml: 'name: x\nstages:\n  a: { uses: exec, with: { command: echo } }\n',
    set: ['name=.'],
    expected: '--set name=.: error: name: expected a letter, digit or "_", then letters, digits, "_", "." or "-", found string "."\n1 error',
  },
];

describe('config diagnostics (golden)', () => {
  for (const { name, yaml, set, expected } of golden) {
    it(name, async () => {
      expect(await validate(name, yaml, set)).toBe(expected);
    });
  }

  it('accepts a valid config and applies typed --set overrides', async () => {
    writeFileSync(path.join(dir, 'ok.yaml'), 'name: x\nstages:\n  a: { uses: exec, with: { command: echo } }\n');
    const result = await loadConfig('ok.yaml', { overrides: ['seed=3', 'stages.a.with.env.N=4'], registry: builtinStages, cwd: dir });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.loaded.config.seed).toBe(3);
    // Defaults come from the schemas: store, executor, resources, and exec's cwd/produces/files.
    expect(result.loaded.config.store).toBe('checkpoints');
    expect(result.loaded.config.resources).toEqual({ train: 1 });
    expect(result.loaded.stages.get('a')?.params).toEqual({ command: 'echo', env: { N: 4 }, cwd: '.', produces: 'files', files: [] });
  });
});

describe('configs/', () => {
  const configs = path.resolve(import.meta.dirname, '../../configs');
  // validate checks that data files exist: a config reading ../shared/data validates only beside it.
  const sharedData = existsSync(path.resolve(import.meta.dirname, '../../../shared/data'));
  for (const file of readdirSync(configs).filter((name) => name.endsWith('.yaml'))) {
    const readsShared = readFileSync(path.join(configs, file), 'utf8').includes('shared/data');
    it.skipIf(readsShared && !sharedData)(`${file} validates`, async () => {
      const result = await loadConfig(path.join(configs, file), { registry: builtinStages });
      expect(result.ok ? 'ok' : formatDiagnostics(result.diagnostics)).toBe('ok');
    });
  }
});
