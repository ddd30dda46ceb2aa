/**
 * The import arrows between the project's folders, and every import cycle.
 *
 *   npx tsx scripts/import-graph.ts [--files] [--fine]
 *
 * Prints one line per folder-to-folder arrow (`from -> to  (n imports)`), the arrows that close a
 * cycle between folders, and the file-level cycles (strongly connected components of two or more
 * files). `--files` also lists each cycle's files; `--fine` splits `pipeline/` into its subfolders. Type-only imports count: a type is as much a
 * dependency for a reader as a value. Exit code 0 whatever it finds: it describes, the tests judge.
 *
 * Written by hand (a regular expression over import/export specifiers) rather than with esbuild's
 * metafile because esbuild erases type-only imports, which are half of the cycles this is for.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

export const ROOT = path.resolve(import.meta.dirname, '..');
/** The folders whose code is the product (tests and benches import everything by design). */
const SOURCE_ROOTS = ['pipeline', 'stages', 'bin'];
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

/** `import ... from 'x'`, `export ... from 'x'`, `import 'x'`, `import('x')` (relative ones only). */
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm;

export function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8').replace(/^\s*\/\/.*$/gm, '');
  return [...text.matchAll(SPECIFIER)].map((m) => path.resolve(path.dirname(file), m[1] as string));
}

/**
 * The folder a file belongs to for the picture: its directory, except that a stage type's folder
 * (`stages/<type>/...`) and the engine's subfolders count as one unit each, and so does the
 * orchestrator (`pipeline/...`) unless `fine` asks for its subfolders.
 */
export function folderOf(relative: string, fine = false): string {
  const parts = path.dirname(relative).split(path.sep);
  if (parts[0] === 'pipeline' && !fine) return 'pipeline';
  if (parts[0] === 'stages' && parts[1] !== undefined && parts[1] !== 'lib') return parts.slice(0, 2).join('/');
  if (parts[0] === 'stages' && parts[1] === 'lib' && parts[2] === 'engine') return 'stages/lib/engine';
  return parts.join('/');
}

/** Tarjan's strongly connected components; returns those with more than one node. */
export function cycles(graph: Map<string, Set<string>>): string[][] {
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string) => {
    indices.set(node, index);
    low.set(node, index);
    index += 1;
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!indices.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) low.set(node, Math.min(low.get(node)!, indices.get(next)!));
    }
    if (low.get(node) === indices.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const node of [...graph.keys()].sort()) if (!indices.has(node)) visit(node);
  return found;
}

function main(): void {
  const listFiles = process.argv.includes('--files');
  const fine = process.argv.includes('--fine');
  const files = SOURCE_ROOTS.flatMap((root) => sourceFiles(path.join(ROOT, root)));
  const fileGraph = new Map<string, Set<string>>();
  const arrows = new Map<string, number>();
  for (const file of files) {
    const from = path.relative(ROOT, file);
    const targets = new Set<string>();
    for (const target of importsOf(file)) {
      const to = path.relative(ROOT, target);
      targets.add(to);
      const [a, b] = [folderOf(from, fine), folderOf(to, fine)];
      if (a !== b) arrows.set(`${a} -> ${b}`, (arrows.get(`${a} -> ${b}`) ?? 0) + 1);
    }
    fileGraph.set(from, targets);
  }
  const folderGraph = new Map<string, Set<string>>();
  for (const arrow of arrows.keys()) {
    const [a, b] = arrow.split(' -> ') as [string, string];
    if (!folderGraph.has(a)) folderGraph.set(a, new Set());
    folderGraph.get(a)!.add(b);
  }
  const folderCycles = cycles(folderGraph);
  const inCycle = new Set(folderCycles.flat());
  console.log(`folder arrows (${arrows.size}):`);
  for (const [arrow, count] of [...arrows].sort(([a], [b]) => a.localeCompare(b))) {
    const [a, b] = arrow.split(' -> ') as [string, string];
    const upward = a.startsWith('pipeline') && b.startsWith('stages');
    console.log(`  ${arrow}  (${count})${upward ? '  [orchestrator -> stages]' : ''}${inCycle.has(a) && inCycle.has(b) && folderCycles.some((c) => c.includes(a) && c.includes(b)) ? '  [in a cycle]' : ''}`);
  }
  console.log(`folder cycles (${folderCycles.length}):`);
  for (const cycle of folderCycles) console.log(`  ${cycle.join(' <-> ')}`);
  const fileCycles = cycles(fileGraph);
  console.log(`file cycles (${fileCycles.length}):`);
  for (const cycle of fileCycles) {
    const dirs = [...new Set(cycle.map((f) => path.dirname(f)))];
    console.log(`  ${dirs.join(', ')}: ${cycle.map((f) => path.basename(f, path.extname(f))).join(', ')}`);
    if (listFiles) for (const file of cycle) console.log(`    ${file}`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
