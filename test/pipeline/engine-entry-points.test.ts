// The engine (packages/engine) is a workspace package: the rest of the repository reaches it only
// through its entry points (`#engine`, `#engine/schema`, `#engine/tokenizer`, `#engine/onnx` in
// package.json "imports", the package's own "exports"), it reaches nothing outside itself, and
// `./schema` stays free of TensorFlow.js so stage definitions load without it.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveSpecifier, ROOT, specifiersOf, SUBPATH_IMPORTS } from '../../scripts/import-graph.ts';

const ENGINE = path.join(ROOT, 'packages', 'engine');
const engineJson = JSON.parse(readFileSync(path.join(ENGINE, 'package.json'), 'utf8')) as {
  exports: Record<string, string>;
  dependencies: Record<string, string>;
  peerDependencies?: Record<string, string>;
};

/** Every .ts/.mjs/.js file under `dir`, build output, AssemblyScript and node_modules aside. */
function codeFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (['node_modules', 'dist', 'build', 'assembly', 'checkpoints'].includes(name) || name.startsWith('.')) return [];
    if (statSync(full).isDirectory()) return codeFiles(full);
    return /\.(ts|mjs|js)$/.test(name) && !name.endsWith('.d.ts') ? [full] : [];
  });
}

const inside = (file: string, dir: string) => file.startsWith(dir + path.sep);
const relative = (file: string) => path.relative(ROOT, file);
/** The package a bare specifier names (`@scope/name/sub` -> `@scope/name`). */
const packageOf = (specifier: string) => specifier.split('/').slice(0, specifier.startsWith('@') ? 2 : 1).join('/');
const isBuiltin = (specifier: string) => specifier.startsWith('node:') || builtinModules.includes(specifier);

/** The package-scoped files a module loads when it runs: value imports, followed through the engine. */
function loadedSpecifiers(entry: string): Set<string> {
  const seen = new Set<string>();
  const bare = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const { specifier, typeOnly } of specifiersOf(file)) {
      if (typeOnly) continue;
      const target = resolveSpecifier(file, specifier);
      if (target) visit(target);
      else bare.add(specifier);
    }
  };
  visit(entry);
  return bare;
}

describe('the engine package', () => {
  it('is reached from outside only through its entry points (the engine\'s own tests in test/engine aside)', () => {
    const entries = new Set(Object.values(engineJson.exports).map((target) => path.join(ENGINE, target)));
    // test/engine holds the engine's white-box tests (kernels against the tfjs ops they replace,
    // parity with a PyTorch reference), which test internals by design.
    const outside = codeFiles(ROOT).filter((file) => !inside(file, ENGINE) && !inside(file, path.join(ROOT, 'test', 'engine')));
    const bypasses = outside.flatMap((file) =>
      specifiersOf(file)
        .filter(({ specifier }) => {
          // By package name it resolves through node_modules, which in a git worktree sharing one
          // install is another checkout's copy.
          if (packageOf(specifier) === '@lore-pipeline/engine') return true;
          const target = resolveSpecifier(file, specifier);
          // A relative path into the package is a bypass even when it names an entry file: the
          // `#engine` names are what keeps importers off the package's layout.
          return target !== undefined && inside(target, ENGINE) && (!specifier.startsWith('#') || !entries.has(target));
        })
        .map(({ specifier }) => `${relative(file)} -> ${specifier}`),
    );
    expect(outside.length).toBeGreaterThan(100);
    expect(bypasses).toEqual([]);
  });

  it('names the same entry points in the repository\'s "imports" as in its own "exports"', () => {
    const imports = Object.fromEntries([...SUBPATH_IMPORTS].filter(([name]) => name.startsWith('#engine')).map(([name, target]) => [name, relative(target)]));
    const exports = Object.fromEntries(Object.entries(engineJson.exports).map(([subpath, target]) => [`#engine${subpath.slice(1)}`, relative(path.join(ENGINE, target))]));
    expect(imports).toEqual(exports);
    expect(Object.keys(exports).sort()).toEqual(['#engine', '#engine/onnx', '#engine/schema', '#engine/tokenizer']);
  });

  it('imports nothing outside itself but the packages its package.json declares', () => {
    const declared = new Set([...Object.keys(engineJson.dependencies), ...Object.keys(engineJson.peerDependencies ?? {})]);
    const problems = codeFiles(ENGINE).flatMap((file) =>
      specifiersOf(file).flatMap(({ specifier }) => {
        if (specifier.startsWith('#')) return [`${relative(file)} -> ${specifier} (the repository's "imports", outside the package)`];
        const target = resolveSpecifier(file, specifier);
        if (target) return inside(target, ENGINE) ? [] : [`${relative(file)} -> ${relative(target)}`];
        return isBuiltin(specifier) || declared.has(packageOf(specifier)) ? [] : [`${relative(file)} -> ${specifier} (not in packages/engine/package.json)`];
      }),
    );
    expect(problems).toEqual([]);
  });

  it('loads neither TensorFlow.js nor onnxruntime from ./schema or ./tokenizer', () => {
    const schema = [...loadedSpecifiers(path.join(ENGINE, engineJson.exports['./schema'] as string))];
    expect(schema.filter((s) => !isBuiltin(s))).toEqual(['zod']);
    const tokenizer = [...loadedSpecifiers(path.join(ENGINE, engineJson.exports['./tokenizer'] as string))];
    expect(tokenizer.filter((s) => s.startsWith('@tensorflow/') || s.startsWith('onnxruntime'))).toEqual([]);
    // The `.` entry does load it: the check above would see it.
    expect([...loadedSpecifiers(path.join(ENGINE, engineJson.exports['.'] as string))]).toContain('@tensorflow/tfjs-core');
  });
});
