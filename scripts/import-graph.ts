/**
 * The import arrows between the project's folders, and every import cycle.
 *
 *   npx tsx scripts/import-graph.ts [--fine]
 *
 * Prints one line per folder-to-folder arrow (`from -> to  (n imports)`), marking those inside a
 * cycle, then the cycles between folders and between files: one per group of folders (files) that
 * import each other, as its shortest closed path (pipeline/graph.ts findCycles, the same search
 * `validate` runs on a config's `needs`). `--fine` splits `pipeline/` into its subfolders. Type-only imports count: a type is as much a
 * dependency for a reader as a value. Exit code 0 whatever it finds: it describes, the tests judge.
 *
 * Written by hand (a regular expression over import/export specifiers) rather than with esbuild's
 * metafile because esbuild erases type-only imports, which are half of the cycles this is for.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { findCycles } from '../pipeline/graph.ts';

export const ROOT = path.resolve(import.meta.dirname, '..');
/** The folders whose code is the product (tests and benches import everything by design). */
const SOURCE_ROOTS = ['pipeline', 'stages', 'packages', 'bin'];
const SKIP = new Set(['node_modules', 'assembly', 'fixtures']);

export function sourceFiles(dir: string): string[] {
  const found: string[] = [];
  for (const name of readdirSync(dir)) {
    if (SKIP.has(name)) continue;
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) found.push(...sourceFiles(full));
    else if (/\.(ts|js)$/.test(name) && !name.endsWith('.d.ts')) found.push(full);
  }
  return found;
}

/**
 * `import ... from 'x'`, `export ... from 'x'`, `import 'x'`, `import('x')`. Group 1 is set when the
 * statement is type-only (`import type`, `export type`), which loads nothing at run time.
 */
const SPECIFIER = /(?:(?:^\s*(?:import|export)\s+(type\s)?[^'";]*?\bfrom\s*)|\bimport\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm;

export interface Specifier {
  specifier: string;
  /** `import type` / `export type`: erased when compiled. */
  typeOnly: boolean;
}

/** Every module specifier a file names (relative, `#` imports, packages, `node:` built-ins). */
export function specifiersOf(file: string): Specifier[] {
  const text = readFileSync(file, 'utf8').replace(/^\s*\/\/.*$/gm, '');
  return [...text.matchAll(SPECIFIER)].map((m) => ({ specifier: m[2] as string, typeOnly: m[1] !== undefined }));
}

/** The file a relative or `#` specifier names; undefined for a package or a built-in. */
export function resolveSpecifier(file: string, specifier: string): string | undefined {
  if (/^\.{1,2}\//.test(specifier)) return path.resolve(path.dirname(file), specifier);
  if (!specifier.startsWith('#')) return undefined;
  const target = SUBPATH_IMPORTS.get(specifier);
  if (!target) throw new Error(`${path.relative(ROOT, file)}: ${specifier} is not in package.json "imports"`);
  return target;
}

/** package.json `imports`: name -> absolute path of the file it names. */
export const SUBPATH_IMPORTS: ReadonlyMap<string, string> = new Map(
  Object.entries((JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { imports?: Record<string, string> }).imports ?? {}).map(([name, target]) => [
    name,
    path.join(ROOT, target),
  ]),
);

/** The files of this checkout that `file` imports (relative and `#` specifiers). */
export function importsOf(file: string): string[] {
  return specifiersOf(file).flatMap(({ specifier }) => resolveSpecifier(file, specifier) ?? []);
}

/**
 * The folder a file belongs to for the picture: its directory, except that a stage type's folder
 * (`stages/<type>/...`) and a workspace package (`packages/<name>/...`) count as one unit each, and so does the
 * orchestrator (`pipeline/...`) unless `fine` asks for its subfolders.
 */
export function folderOf(relative: string, fine = false): string {
  const parts = path.dirname(relative).split(path.sep);
  if (parts[0] === 'pipeline' && !fine) return 'pipeline';
  if (parts[0] === 'stages' && parts[1] !== undefined && parts[1] !== 'lib') return parts.slice(0, 2).join('/');
  if (parts[0] === 'packages' && parts[1] !== undefined) return parts.slice(0, 2).join('/');
  return parts.join('/');
}

/** Each source file of `roots` (relative to the repository) -> the files it imports. */
export function importGraph(roots: readonly string[] = SOURCE_ROOTS): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of roots.flatMap((root) => sourceFiles(path.join(ROOT, root)))) {
    graph.set(path.relative(ROOT, file), [...new Set(importsOf(file).map((target) => path.relative(ROOT, target)))]);
  }
  return graph;
}

/** The file graph read folder by folder (folderOf): each arrow between two folders with how many imports make it, and each folder -> the folders it imports. */
export function folderGraph(files: ReadonlyMap<string, readonly string[]>, fine = false): { arrows: Map<string, number>; folders: Map<string, string[]> } {
  const arrows = new Map<string, number>();
  const folders = new Map<string, string[]>();
  for (const [from, targets] of files) {
    for (const to of targets) {
      const [a, b] = [folderOf(from, fine), folderOf(to, fine)];
      if (a === b) continue;
      arrows.set(`${a} -> ${b}`, (arrows.get(`${a} -> ${b}`) ?? 0) + 1);
      if (!folders.get(a)?.includes(b)) folders.set(a, [...(folders.get(a) ?? []), b]);
      if (!folders.has(b)) folders.set(b, []);
    }
  }
  return { arrows, folders };
}

function main(): void {
  const fine = process.argv.includes('--fine');
  const files = importGraph();
  const { arrows, folders } = folderGraph(files, fine);
  console.log(`folder arrows (${arrows.size}):`);
  for (const [arrow, count] of [...arrows].sort(([a], [b]) => a.localeCompare(b))) {
    const upward = arrow.startsWith('pipeline') && arrow.split(' -> ')[1]?.startsWith('stages');
    console.log(`  ${arrow}  (${count})${upward ? '  [orchestrator -> stages]' : ''}`);
  }
  const folderCycles = findCycles(folders);
  console.log(`folder cycles (${folderCycles.length}):`);
  for (const cycle of folderCycles) console.log(`  ${cycle.join(' -> ')}`);
  const fileCycles = findCycles(files);
  console.log(`file cycles (${fileCycles.length}):`);
  for (const cycle of fileCycles) console.log(`  ${cycle.join(' -> ')}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
