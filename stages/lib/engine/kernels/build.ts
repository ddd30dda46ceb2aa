/**
 * Builds the fused kernels (assembly/index.ts, AssemblyScript) into a .wasm named by the hash of
 * the source and the compiler version, so a changed source never loads a stale binary. Nothing
 * built is committed: `npm ci` runs this as `prepare`, and the engine runs it on first use when
 * the file is missing (about 10 s; concurrent builds are harmless, the file is renamed into place).
 *
 *   npm run build:kernels
 *
 * Compiler settings, and why:
 * - `importMemory`: the module works on tfjs-wasm's own memory, so pointers are tensor offsets.
 * - `shrinkLevel 1`: AssemblyScript's math then computes exp/log without lookup tables; tables would
 *   be data segments, written at instantiation into the imported memory, i.e. over tfjs' heap.
 *   `assertNoData` refuses any build that has one.
 * - `runtime stub`, `noAssert`, `use abort=`: no allocator, no assertion strings, no imports but memory.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const KERNELS_DIR = import.meta.dirname;
export const KERNEL_SOURCE = join(KERNELS_DIR, 'assembly', 'index.ts');
const BUILD_DIR = join(KERNELS_DIR, 'build');

const COMPILER_OPTIONS = {
  optimizeLevel: 3,
  shrinkLevel: 1,
  runtime: 'stub',
  noAssert: true,
  importMemory: true,
  use: ['abort='],
  enable: ['simd'],
};

/** Where the build of the current source goes (it may not exist yet). */
export function kernelBinaryPath(compilerVersion: string): string {
  const hash = createHash('sha256').update(readFileSync(KERNEL_SOURCE)).update(compilerVersion).update(JSON.stringify(COMPILER_OPTIONS)).digest('hex');
  return join(BUILD_DIR, `kernels-${hash.slice(0, 16)}.wasm`);
}

/**
 * The built kernels' bytes: read from the build folder, or compiled now and saved there. Throws
 * when AssemblyScript is not installed (a production install without dev dependencies) or the
 * source does not compile.
 */
export async function buildKernels(): Promise<{ binary: Uint8Array; path: string; built: boolean }> {
  // The version from package.json: importing the compiler takes seconds, and is only needed to build.
  const { version } = createRequire(import.meta.url)('assemblyscript/package.json') as { version: string };
  const path = kernelBinaryPath(version);
  if (existsSync(path)) return { binary: readFileSync(path), path, built: false };
  const asc = await import('assemblyscript/asc');
  const result = await asc.compileString({ 'index.ts': readFileSync(KERNEL_SOURCE, 'utf8') }, { ...COMPILER_OPTIONS, textFile: 'index.wat' });
  const { binary } = result;
  if (!binary) throw new Error(`${KERNEL_SOURCE}: AssemblyScript compile failed:\n${result.stderr.toString()}`);
  // compileString returns each requested output under its file name.
  assertNoData(String((result as unknown as Record<string, unknown>)['index.wat'] ?? ''));
  mkdirSync(BUILD_DIR, { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, binary);
  renameSync(temporary, path);
  // Builds of earlier sources are never loaded again.
  for (const file of readdirSync(BUILD_DIR)) if (/^kernels-[0-9a-f]+\.wasm$/.test(file) && join(BUILD_DIR, file) !== path) rmSync(join(BUILD_DIR, file), { force: true });
  return { binary, path, built: true };
}

function assertNoData(wat: string): void {
  if (wat.includes('(data ')) {
    throw new Error(`${KERNEL_SOURCE}: the build has a data segment, which would overwrite tfjs-wasm's heap at instantiation (use no static data: no strings, no lookup tables)`);
  }
  if (!wat.includes('(import "env" "memory"')) throw new Error(`${KERNEL_SOURCE}: the build does not import its memory`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const start = performance.now();
  const { path, built } = await buildKernels();
  console.log(`${built ? 'built' : 'up to date'}: ${path} (${((performance.now() - start) / 1000).toFixed(1)} s)`);
}
