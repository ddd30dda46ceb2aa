/**
 * Imports a user's TypeScript module (a stage named by `uses:`, a reward named by `use:`).
 *
 * Why the unwrapping: outside an ES-module package (no `"type": "module"` in a package.json above
 * it) Node treats a `.ts` file as CommonJS, so tsx compiles its `export default` to
 * `exports.default`, and `import()` hands back `module.exports` as the default export:
 * `{ default: { __esModule: true, default: ... } }`. Such a module is unwrapped to its own exports,
 * so a reward or stage file works wherever the user keeps it, with or without a package.json.
 */
import { pathToFileURL } from 'node:url';

export async function importUserModule(file: string): Promise<Record<string, unknown>> {
  const module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  const commonJsExports = module.default as { __esModule?: unknown } | undefined;
  if (commonJsExports !== null && typeof commonJsExports === 'object' && commonJsExports.__esModule === true) {
    return commonJsExports as Record<string, unknown>;
  }
  return module;
}
