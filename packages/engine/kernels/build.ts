/**
 * Builds the fused kernels (assembly/*.ts, AssemblyScript; index.ts is the entry) into a .wasm named by the hash of
 * the sources, the compiler version and its settings, so a changed source never loads a stale binary. Nothing
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
 * - The `shared` variant (for tfjs-wasm's threaded binary, whose memory is shared): `sharedMemory`
 *   with the threads feature, and the same maximum as that memory (65,536 pages, 4 GiB), since an
 *   imported shared memory's limits must match the import's.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const KERNELS_DIR = import.meta.dirname;
const SOURCE_DIR = join(KERNELS_DIR, 'assembly');
export const KERNEL_SOURCE = join(SOURCE_DIR, 'index.ts');

/** Every source file by name, sorted (the entry imports the others). */
function kernelSources(): Array<[string, string]> {
  return readdirSync(SOURCE_DIR).filter((f) => f.endsWith('.ts')).sort().map((f) => [f, readFileSync(join(SOURCE_DIR, f), 'utf8')]);
}
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

/**
 * The one call of AssemblyScript's compiler API used here. Typed by hand, and imported through a
 * variable so TypeScript does not read the package's declarations: they declare a global
 * `namespace console` (AssemblyScript's own, with `log` only) that merges into Node's `console`
 * for the whole project, and `console.error` then fails to type-check in unrelated files.
 */
interface AscCompiler {
  compileString(sources: Record<string, string>, options: Record<string, unknown>): Promise<{ binary: Uint8Array | null; stderr: { toString(): string } }>;
}
const ASC_MODULE = 'assemblyscript/asc';

/** Which memory the kernels import: tfjs-wasm's plain binary's, or its threaded binary's (shared). */
export type KernelMemory = 'unshared' | 'shared';
const VARIANTS: Record<KernelMemory, Record<string, unknown>> = {
  unshared: COMPILER_OPTIONS,
  shared: { ...COMPILER_OPTIONS, enable: ['simd', 'threads'], sharedMemory: true, maximumMemory: 65536 },
};

/** Where the build of the current source goes (it may not exist yet). */
export function kernelBinaryPath(compilerVersion: string, memory: KernelMemory = 'unshared'): string {
  const hash = createHash('sha256').update(JSON.stringify(kernelSources())).update(compilerVersion).update(JSON.stringify(VARIANTS[memory])).digest('hex');
  return join(BUILD_DIR, `kernels-${hash.slice(0, 16)}.wasm`);
}

/**
 * The built kernels' bytes: read from the build folder, or compiled now and saved there. Throws
 * when AssemblyScript is not installed (a production install without dev dependencies) or the
 * source does not compile.
 */
export async function buildKernels(memory: KernelMemory = 'unshared'): Promise<{ binary: Uint8Array; path: string; built: boolean }> {
  // The version from package.json: importing the compiler takes seconds, and is only needed to build.
  const { version } = createRequire(import.meta.url)('assemblyscript/package.json') as { version: string };
  const path = kernelBinaryPath(version, memory);
  if (existsSync(path)) return { binary: readFileSync(path), path, built: false };
  const asc = (await import(ASC_MODULE)) as AscCompiler;
  const result = await asc.compileString(Object.fromEntries(kernelSources()), { ...VARIANTS[memory], textFile: 'index.wat' });
  const { binary } = result;
  if (!binary) throw new Error(`${KERNEL_SOURCE}: AssemblyScript compile failed:\n${result.stderr.toString()}`);
  // compileString returns each requested output under its file name.
  assertNoData(String((result as unknown as Record<string, unknown>)['index.wat'] ?? ''));
  mkdirSync(BUILD_DIR, { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, binary);
  renameSync(temporary, path);
  // Builds of earlier sources are never loaded again.
  const current = new Set((Object.keys(VARIANTS) as KernelMemory[]).map((m) => kernelBinaryPath(version, m)));
  for (const file of readdirSync(BUILD_DIR)) if (/^kernels-[0-9a-f]+\.wasm$/.test(file) && !current.has(join(BUILD_DIR, file))) rmSync(join(BUILD_DIR, file), { force: true });
  return { binary, path, built: true };
}

function assertNoData(wat: string): void {
  if (wat.includes('(data ')) {
    throw new Error(`${KERNEL_SOURCE}: the build has a data segment, which would overwrite tfjs-wasm's heap at instantiation (use no static data: no strings, no lookup tables)`);
  }
  if (!wat.includes('(import "env" "memory"')) throw new Error(`${KERNEL_SOURCE}: the build does not import its memory`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const memory of Object.keys(VARIANTS) as KernelMemory[]) {
    const start = performance.now();
    const { path, built } = await buildKernels(memory);
    console.log(`${built ? 'built' : 'up to date'} (${memory} memory): ${path} (${((performance.now() - start) / 1000).toFixed(1)} s)`);
  }
}
