/**
 * User modules: a stage named by `uses:`, a reward named by `use:`. Both are trusted code (README,
 * "Reward files and user stages are trusted code"): importing one runs it with the pipeline's access.
 *
 * importUserModule imports a user's TypeScript module.
 *
 * Why the unwrapping: outside an ES-module package (no `"type": "module"` in a package.json above
 * it) Node treats a `.ts` file as CommonJS, so tsx compiles its `export default` to
 * `exports.default`, and `import()` hands back `module.exports` as the default export:
 * `{ default: { __esModule: true, default: ... } }`. Such a module is unwrapped to its own exports,
 * so a reward or stage file works wherever the user keeps it, with or without a package.json.
 */
import { pathToFileURL } from 'node:url';

/**
 * Whether this process can import TypeScript yet. Running from the sources (tsx, vitest) it can:
 * this very file was loaded as `.ts`. Running the compiled dist/ it cannot until tsx's hooks are
 * registered, which costs start-up time, so that happens only when a user's `.ts` file is imported.
 */
let typeScriptLoads = import.meta.url.endsWith('.ts');

/**
 * Registers tsx's hooks once. Both of them: a user's .ts file outside an ES-module package is
 * CommonJS to Node, and without the CommonJS hook Node 20 refuses to load it ("Cannot require() ES
 * Module ... in a cycle").
 */
async function loadTypeScript(): Promise<void> {
  if (typeScriptLoads) return;
  const [esm, commonJs] = await Promise.all([import('tsx/esm/api'), import('tsx/cjs/api')]);
  esm.register();
  commonJs.register();
  typeScriptLoads = true;
}

export async function importUserModule(file: string): Promise<Record<string, unknown>> {
  if (/\.[mc]?tsx?$/.test(file)) await loadTypeScript();
  const module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  const commonJsExports = module.default as { __esModule?: unknown } | undefined;
  if (commonJsExports !== null && typeof commonJsExports === 'object' && commonJsExports.__esModule === true) {
    return commonJsExports as Record<string, unknown>;
  }
  return module;
}

/**
 * Why a user module failed to load, in one line: the error's first line, or for a compile error
 * ("Transform failed with 1 error:") the line that follows, which names file:line:col and the problem.
 */
export function describeLoadError(error: unknown): string {
  // Loaders colour their messages; a config error is printed into files and logs too.
  const text = (error instanceof Error ? error.message : String(error)).replace(/\x1b\[[0-9;]*m/g, '');
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const first = lines[0] ?? 'unknown error';
  return first.endsWith(':') && lines[1] ? `${first} ${lines[1].trim()}` : first;
}

/**
 * Checks a user module without running it: esbuild transpiles the one file (its imports are not
 * followed, nothing is evaluated) and reports its syntax errors, located, or the names it exports.
 * esbuild rather than TypeScript's compiler: it is what tsx itself uses to load the file, so a
 * file that passes here is one tsx can transpile.
 */
export async function checkUserModule(file: string): Promise<{ exports: string[] } | { error: string }> {
  try {
    const { build } = await import('esbuild');
    const result = await build({ entryPoints: [file], bundle: false, write: false, metafile: true, format: 'esm', platform: 'node', outdir: 'out', logLevel: 'silent' });
    return { exports: Object.values(result.metafile.outputs).flatMap((output) => output.exports) };
  } catch (error) {
    const first = (error as { errors?: { text: string; location: { file: string; line: number; column: number } | null }[] }).errors?.[0];
    if (!first) return { error: `does not compile: ${describeLoadError(error)}` };
    const at = first.location ? ` at ${file}:${first.location.line}:${first.location.column + 1}` : '';
    return { error: `does not compile${at}: ${first.text}` };
  }
}
