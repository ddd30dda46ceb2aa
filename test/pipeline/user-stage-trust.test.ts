// A `uses: ./x.ts` stage is trusted code that only `run` executes: the read-only commands check the
// file without running it, and still say cached and stale exactly where `run` does (real CLI).
import { appendFileSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, FIXTURES, runsOf, workspaces } from './cli-helpers.ts';

const workspace = workspaces();
const COUNT = path.join(FIXTURES, 'count-stage.ts');

// The counting stage, with a side effect on import (a line in imported.txt) and a declared data file.
const MODULE = [
  "import { appendFileSync } from 'node:fs';",
  `import count from '${COUNT}';`,
  "appendFileSync(new URL('./imported.txt', import.meta.url), 'imported\\n');",
  "export default { ...count, name: 'marked', version: '2', userFiles: () => ['data.txt'] };",
  '',
].join('\n');

const CONFIG = ['name: trust', 'stages:', '  first: { uses: ./marked.ts, with: { value: x } }', '  second: { uses: ./marked.ts, needs: [first] }', ''].join('\n');

interface Status {
  stages: { name: string; upToDate: boolean }[];
}

describe('user stage files are run only by `pipeline run`', () => {
  it('read-only commands do not import them and agree with run on cached and stale', async () => {
    const dir = workspace('pipeline-user-trust-');
    writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
    writeFileSync(path.join(dir, 'marked.ts'), MODULE);
    writeFileSync(path.join(dir, 'data.txt'), 'one\n');
    writeFileSync(path.join(dir, 'p.yaml'), CONFIG);
    const marker = path.join(dir, 'imported.txt');
    const readOnly = async (...commands: string[][]) => {
      for (const args of commands) {
        const result = await cli(dir, args);
        expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(0);
        expect(existsSync(marker), `${args.join(' ')} imported the stage file`).toBe(false);
      }
    };
    const upToDate = async () => ((JSON.parse((await cli(dir, ['status', 'p.yaml', '--json'])).stdout) as Status).stages).map((s) => [s.name, s.upToDate]);
    const plan = async () => (await cli(dir, ['plan', 'p.yaml'])).stdout;
    const run = async () => {
      const result = await cli(dir, ['run', 'p.yaml']);
      expect(result.code, result.stderr).toBe(0);
      return result.stdout;
    };

    await readOnly(['validate', 'p.yaml'], ['plan', 'p.yaml'], ['status', 'p.yaml'], ['ls', 'p.yaml']);
    expect(await plan()).toMatch(/^first: run \([0-9a-f]{8}\), never built$/m);

    const built = await run();
    expect(readFileSync(marker, 'utf8')).toBe('imported\n');
    expect(built).toContain('succeeded: 2 built, 0 cached');
    rmSync(marker);

    // Unchanged: every read-only command, the stage's declared file and defaults included, says what run says.
    await readOnly(['show', 'p.yaml', 'first'], ['ls', 'p.yaml'], ['report', 'p.yaml'], ['validate', 'p.yaml']);
    expect(await upToDate()).toEqual([['first', true], ['second', true]]);
    expect(await plan()).toMatch(/^first: cached \([0-9a-f]{8}\)\nsecond: cached \([0-9a-f]{8}\)$/m);
    expect(existsSync(marker)).toBe(false);
    expect(await run()).toContain('succeeded: 0 built, 2 cached');
    rmSync(marker);

    // The file the stage declares (known to plan only from its manifest) changed: stale, with the
    // very fingerprints run then builds.
    writeFileSync(path.join(dir, 'data.txt'), 'two\n');
    expect(await upToDate()).toEqual([['first', false], ['second', false]]);
    const planned = await plan();
    expect(planned).toMatch(/^first: rerun \([0-9a-f]{8}\), user file data\.txt changed$/m);
    expect(existsSync(marker)).toBe(false);
    const rebuilt = await run();
    expect(rebuilt.split('\n').slice(0, 2)).toEqual(planned.trim().split('\n'));
    expect(runsOf(dir)).toEqual(['first', 'second', 'first', 'second']);
    rmSync(marker);

    // Editing the stage file: stale; changing it back finds the artifacts built from it: cached.
    appendFileSync(path.join(dir, 'marked.ts'), '// edited\n');
    expect(await upToDate()).toEqual([['first', false], ['second', false]]);
    expect(await plan()).toMatch(/^first: rerun \([0-9a-f]{8}\), user file \.\/marked\.ts changed$/m);
    expect(existsSync(marker)).toBe(false);
    expect(await run()).toContain('succeeded: 2 built, 0 cached');
    rmSync(marker);
    writeFileSync(path.join(dir, 'marked.ts'), MODULE);
    expect(await upToDate()).toEqual([['first', true], ['second', true]]);
    expect(await run()).toContain('succeeded: 0 built, 2 cached');
  });

  it('params errors are located when run imports the file; validate names a file that exports no stage without running it', async () => {
    const dir = workspace('pipeline-user-trust-errors-');
    writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
    writeFileSync(path.join(dir, 'marked.ts'), MODULE);
    writeFileSync(path.join(dir, 'data.txt'), 'one\n');
    writeFileSync(path.join(dir, 'p.yaml'), ['name: bad', 'stages:', '  first: { uses: ./marked.ts, with: { valu: x } }', ''].join('\n'));
    const failed = await cli(dir, ['run', 'p.yaml']);
    expect(failed.code).toBe(2);
    expect(failed.stderr).toMatch(/p\.yaml:3:\d+: error: stages\.first\.with: unknown key "valu" \(did you mean "value"\?\)/);
    expect(existsSync(path.join(dir, 'checkpoints/objects'))).toBe(false);
    rmSync(path.join(dir, 'imported.txt'));

    writeFileSync(path.join(dir, 'none.ts'), "import { appendFileSync } from 'node:fs';\nappendFileSync('imported.txt', 'imported\\n');\nexport const stage2 = 1;\n");
    writeFileSync(path.join(dir, 'q.yaml'), ['name: none', 'stages:', '  only: { uses: ./none.ts }', ''].join('\n'));
    const invalid = await cli(dir, ['validate', 'q.yaml']);
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toMatch(/q\.yaml:3:\d+: error: stages\.only\.uses: stage module \.\/none\.ts does not export a stage/);
    expect(existsSync(path.join(dir, 'imported.txt'))).toBe(false);
  });
});
