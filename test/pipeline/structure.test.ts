// The shape docs/design.md §8 promises a reader of stages/: stages/lib is made of named section
// folders, a stage type's folder reads another stage's output through stages/lib/artifacts (by kind,
// as stage-api.ts asks), never through that stage's code, and no two folders import each other.
import { readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { findCycles } from '../../pipeline/graph.ts';
import { folderGraph, importGraph, ROOT } from '../../scripts/import-graph.ts';

/** `stages/<type>/...` -> `<type>`; undefined for stages/lib, the composition files and anything outside stages/. */
function stageTypeOf(relative: string): string | undefined {
  const [top, folder, ...rest] = relative.split(path.sep);
  return top === 'stages' && folder !== 'lib' && rest.length > 0 ? folder : undefined;
}

/** Every import from a file of `from` into another stage type's folder, as "file -> target". */
function crossStageImports(files: ReadonlyMap<string, readonly string[]>): string[] {
  return [...files].flatMap(([file, targets]) => {
    const own = stageTypeOf(file);
    const inLib = file.startsWith(`stages${path.sep}lib${path.sep}`);
    if (own === undefined && !inLib) return [];
    return targets.filter((target) => stageTypeOf(target) !== undefined && stageTypeOf(target) !== own).map((target) => `${file} -> ${target}`);
  });
}

describe('stages/lib', () => {
  it('holds only section folders, no loose files', () => {
    const lib = path.join(ROOT, 'stages', 'lib');
    const loose = readdirSync(lib).filter((name) => !statSync(path.join(lib, name)).isDirectory());
    expect(loose).toEqual([]);
  });
});

describe('the stage folders', () => {
  it('import no other stage folder, and stages/lib imports none', () => {
    expect(crossStageImports(importGraph(['stages']))).toEqual([]);
  });

  it('are told apart from stages/lib and the composition files by the rule', () => {
    // The rule itself, on a made-up graph: dpo reading sample's code, lib reaching into a stage,
    // and the registry (the composition root of stages/) importing every stage.
    const files = new Map([
      [path.join('stages', 'dpo', 'index.ts'), [path.join('stages', 'sample', 'index.ts'), path.join('stages', 'dpo', 'pairs.ts'), path.join('stages', 'lib', 'artifacts', 'samples.ts')]],
      [path.join('stages', 'lib', 'serving', 'serve-command.ts'), [path.join('stages', 'rewrite', 'index.ts')]],
      [path.join('stages', 'registry.ts'), [path.join('stages', 'dpo', 'index.ts')]],
    ]);
    expect(crossStageImports(files)).toEqual([
      `${path.join('stages', 'dpo', 'index.ts')} -> ${path.join('stages', 'sample', 'index.ts')}`,
      `${path.join('stages', 'lib', 'serving', 'serve-command.ts')} -> ${path.join('stages', 'rewrite', 'index.ts')}`,
    ]);
  });
});

describe('the folders of pipeline/, stages/ and bin/', () => {
  it('import each other in no cycle (type-only imports count)', () => {
    expect(findCycles(folderGraph(importGraph()).folders)).toEqual([]);
  });
});
