/**
 * Renamed keys of a stage's `with:` (StageType.renamedParams): the old name still loads, as the new
 * one, with a warning that names the new key; a stage that writes both names is an error (which
 * value was meant is not known). Only the key changes: its value is checked by the stage's schema,
 * and a problem with it is reported at the key as written.
 */
import type { Diagnostic, KeyPath } from '../diagnostics.ts';
import { locate, type YamlSource } from './locate.ts';

/** `withRaw` with each old key renamed, and a diagnostic per old key; `base` is where `with:` sits. */
export function applyRenamedParams(
  withRaw: unknown,
  renamed: Readonly<Record<string, string>> | undefined,
  source: YamlSource,
  base: KeyPath,
): { value: unknown; diagnostics: Diagnostic[]; writtenAs: ReadonlyMap<string, string> } {
  const writtenAs = new Map<string, string>();
  if (!renamed || withRaw === null || typeof withRaw !== 'object' || Array.isArray(withRaw)) return { value: withRaw, diagnostics: [], writtenAs };
  const written = withRaw as Record<string, unknown>;
  const diagnostics: Diagnostic[] = [];
  const value: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(written)) {
    const newKey = Object.hasOwn(renamed, key) ? renamed[key] : undefined;
    if (newKey === undefined) {
      value[key] = v;
      continue;
    }
    const location = locate(source, [...base, key], { key: true });
    if (Object.hasOwn(written, newKey)) {
      diagnostics.push({ location, path: base, message: `"${key}" is the old name of "${newKey}", which is also given: keep "${newKey}" only` });
      continue;
    }
    diagnostics.push({ location, path: base, severity: 'warning', message: `"${key}" is renamed "${newKey}"; the old name still works in this release but will be removed: write "${newKey}"` });
    value[newKey] = v;
    writtenAs.set(newKey, key);
  }
  return { value, diagnostics, writtenAs };
}

/**
 * Schema issues about a renamed key's value, re-pathed to the key as written (`writtenAs`: new ->
 * old), so that they point at the line the user wrote and name the key they wrote.
 */
export function issuesAsWritten<Issue extends { path: PropertyKey[] }>(issues: readonly Issue[], writtenAs: ReadonlyMap<string, string>): Issue[] {
  return issues.map((issue) => {
    const old = writtenAs.get(String(issue.path[0]));
    return old === undefined ? issue : { ...issue, path: [old, ...issue.path.slice(1)] };
  });
}
