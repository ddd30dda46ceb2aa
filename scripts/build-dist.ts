/**
 * Compiles the TypeScript sources (pipeline/, stages/, the engine's packages/engine/) to JavaScript under dist/, one .js per .ts at
 * the same relative path, so `npx pipeline` starts without transpiling (`npm ci` runs this as part
 * of `prepare`; `npm run build` by hand).
 *
 *   npx tsx scripts/build-dist.ts
 *
 * bin/pipeline.js runs dist/ only while it matches the sources: dist/sources.json records each
 * source's size, modification time and sha256, and any difference in content (an edit, a checkout
 * of other code, a deleted file) sends bin/pipeline.js back to running the sources through tsx. So
 * a stale build is never run.
 *
 * Why esbuild in bundle mode with every relative import external: it is the mode whose resolve hook
 * sees each import, so `./x.ts` can be rewritten to `./x.js` (transform mode leaves specifiers
 * alone, and Node 20 cannot load `.ts`). Each file still compiles to one file: nothing is inlined.
 *
 * What the sources find next to themselves at run time is made to be there in dist/ too: the worker
 * entries (`*.mjs`, copied with their `.ts` import pointed at the `.js`), copies of the folders they
 * read by relative path (data/, scripts/slurm/, the kernels' sources and builds), and a
 * dist/bin/pipeline.js that runs bin/pipeline.js. Copies, not links: `npm pack` leaves symbolic
 * links out of the package, and an installed package's dist/ must find them. The copied files
 * (the kernels' builds aside, which are derived from their sources) are stamped in sources.json
 * like the code, so an edit to one also sends bin/pipeline.js back to the sources.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { build, type Plugin } from 'esbuild';

export const ROOT = path.resolve(import.meta.dirname, '..');
export const DIST = path.join(ROOT, 'dist');
/** What bin/pipeline.js compares with the sources before it runs dist/. */
export const SOURCES_FILE = 'sources.json';
const SOURCE_ROOTS = ['pipeline', 'stages', 'packages/engine'];
/** AssemblyScript (compiled by the kernels' own build) and the kernels' build output. */
const SKIP_DIRS = new Set(['assembly', 'build', 'node_modules']);
/** Folders the sources reach by relative path from their own location, copied and stamped. */
const COPIES = ['data', 'scripts/slurm', 'packages/engine/kernels/assembly'];
/** Copied but not stamped: the kernels' builds, named by the hash of their sources (kernels/build.ts). */
const BUILD_OUTPUTS = ['packages/engine/kernels/build'];
/** What pipeline/executor/run-stage.ts starts a remote stage with, reached from dist/pipeline/executor. */
const BIN_SHIM = { at: 'bin/pipeline.js', text: "// Runs the real bin/pipeline.js, which finds the repository from its own location.\nimport '../../bin/pipeline.js';\n" };

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(full) : entry.isFile() ? [full] : [];
  });
}

export function sourceFiles(dir: string, pattern: RegExp): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!SKIP_DIRS.has(entry.name)) found.push(...sourceFiles(full, pattern));
    } else if (pattern.test(entry.name) && !entry.name.endsWith('.d.ts')) found.push(full);
  }
  return found;
}

/**
 * Each source file (relative to the repository) -> [size, mtimeMs, sha256], as bin/pipeline.js
 * checks it: a file whose size and time match is current; one whose time alone differs (a touch,
 * a tar or npm pack, which reset times) is compared by content.
 */
export function sourceStamps(files: readonly string[]): Record<string, [number, number, string]> {
  return Object.fromEntries(
    files.map((file) => {
      const stat = statSync(file);
      return [path.relative(ROOT, file), [stat.size, stat.mtimeMs, createHash('sha256').update(readFileSync(file)).digest('hex')]];
    }),
  );
}

/**
 * The package.json `imports` (`#engine`, `#engine/schema`, ...): each maps to a `.ts` source that
 * Node 20 cannot load, so in dist/ an import of one becomes the relative path, from the importing
 * file, to the compiled entry.
 */
export function subpathImports(): Map<string, string> {
  const { imports = {} } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { imports?: Record<string, string> };
  return new Map(Object.entries(imports).map(([name, target]) => [name, path.join(ROOT, target)]));
}

const importsToJs = (subpaths: Map<string, string>): Plugin => ({
  name: 'imports-to-js',
  setup(build) {
    build.onResolve({ filter: /^\.\.?\// }, (args) => ({ path: args.path.replace(/\.ts$/, '.js'), external: true }));
    build.onResolve({ filter: /^#/ }, (args) => {
      const target = subpaths.get(args.path);
      if (!target) return { errors: [{ text: `${args.path} is not in package.json "imports"` }] };
      const relative = path.relative(path.dirname(args.importer), target).replace(/\.ts$/, '.js');
      return { path: relative.startsWith('.') ? relative : `./${relative}`, external: true };
    });
  },
});

export async function buildDist(): Promise<{ files: number; seconds: number }> {
  const started = performance.now();
  const typescript = SOURCE_ROOTS.flatMap((root) => sourceFiles(path.join(ROOT, root), /\.ts$/));
  const workers = SOURCE_ROOTS.flatMap((root) => sourceFiles(path.join(ROOT, root), /\.mjs$/));
  // Built aside and renamed into place: a failed or interrupted build leaves the previous dist/ whole.
  const staging = `${DIST}.partial-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  const result = await build({
    entryPoints: typescript,
    outdir: staging,
    outbase: ROOT,
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: 'linked',
    plugins: [importsToJs(subpathImports())],
    logLevel: 'warning',
  });
  if (result.errors.length > 0) throw new Error(`esbuild failed with ${result.errors.length} errors`);
  for (const worker of workers) {
    const relative = path.relative(ROOT, worker);
    mkdirSync(path.dirname(path.join(staging, relative)), { recursive: true });
    writeFileSync(path.join(staging, relative), readFileSync(worker, 'utf8').replace(/(import\(\s*'\.\/[^']+)\.ts'/g, "$1.js'"));
  }
  const copied = COPIES.flatMap((dir) => filesUnder(path.join(ROOT, dir)));
  for (const file of [...copied, ...BUILD_OUTPUTS.flatMap((dir) => filesUnder(path.join(ROOT, dir)))]) {
    const at = path.join(staging, path.relative(ROOT, file));
    mkdirSync(path.dirname(at), { recursive: true });
    copyFileSync(file, at);
  }
  mkdirSync(path.dirname(path.join(staging, BIN_SHIM.at)), { recursive: true });
  writeFileSync(path.join(staging, BIN_SHIM.at), BIN_SHIM.text);
  const stamps = sourceStamps([...typescript, ...workers, ...copied]);
  const digest = createHash('sha256').update(JSON.stringify(stamps)).digest('hex').slice(0, 16);
  writeFileSync(path.join(staging, SOURCES_FILE), `${JSON.stringify({ digest, files: stamps }, null, 1)}\n`);
  rmSync(DIST, { recursive: true, force: true });
  renameSync(staging, DIST);
  return { files: typescript.length, seconds: (performance.now() - started) / 1000 };
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  const { files, seconds } = await buildDist();
  console.log(`dist/: ${files} files compiled in ${seconds.toFixed(1)} s`);
}
