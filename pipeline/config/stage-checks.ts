/**
 * Checks of a loaded config that need the stage types and the files on disk but no store and no
 * training, so that `validate` (and `plan`, `run`) report them before anything runs: each stage's
 * required input kinds, the user files it names, and the stage type's own `check`.
 */
import * as path from 'node:path';
import type { Diagnostic, KeyPath } from '../diagnostics.ts';
import { producedKind } from '../stage-api.ts';
import { exists } from '../store/fs-util.ts';
import { locate, type YamlSource } from './locate.ts';
import type { LoadedStage } from './loaded.ts';

export interface StageToCheck {
  loaded: LoadedStage;
  needs: readonly string[];
  /** The stage's `with:` as written (after --set), to find where a file was named. */
  withRaw: unknown;
}

export async function checkStages(stages: ReadonlyMap<string, StageToCheck>, source: YamlSource, configDir: string): Promise<Diagnostic[]> {
  const diagnostics: Diagnostic[] = [];
  for (const [name, { loaded, needs, withRaw }] of stages) {
    diagnostics.push(...checkInputKinds(name, loaded, needs, stages, source));
    const withPath = ['stages', name, 'with'];
    const missing = new Set<string>();
    for (const file of loaded.type.userFiles?.(loaded.params, configDir) ?? []) {
      const absolute = path.resolve(configDir, file);
      if (await exists(absolute)) continue;
      const at = [...withPath, ...(pathOfValue(withRaw, file) ?? [])];
      missing.add(at.join('.'));
      diagnostics.push({ location: locate(source, at), path: at, message: `file not found: ${file} (looked for ${absolute})` });
    }
    for (const problem of (await loaded.type.check?.(loaded.params, { configDir, needs })) ?? []) {
      const at = [...withPath, ...problem.path];
      // A stage's check may trip over a missing file too: it is reported once, above.
      if (!missing.has(at.join('.'))) diagnostics.push({ location: locate(source, at), path: at, message: problem.message });
    }
  }
  return diagnostics;
}

function checkInputKinds(name: string, loaded: LoadedStage, needs: readonly string[], stages: ReadonlyMap<string, StageToCheck>, source: YamlSource): Diagnostic[] {
  const required = loaded.type.requires?.(loaded.params) ?? [];
  // A user stage that was not imported has no known kind (its code says it): `run` checks it.
  const kindOf = (stage: StageToCheck | undefined) =>
    stage && stage.loaded.userStage?.imported !== false ? producedKind(stage.loaded.type, stage.loaded.params) : undefined;
  const given = needs.map((need) => ({ need, kind: kindOf(stages.get(need)) }));
  // A need that did not load (unknown, or its own errors) or of unknown kind: judge nothing then.
  if (required.length === 0 || given.some((input) => input.kind === undefined)) return [];
  const missing = required.filter((kind) => !given.some((input) => input.kind === kind));
  if (missing.length === 0) return [];
  const producers = (kind: string) => [...stages].filter(([, s]) => kindOf(s) === kind).map(([n]) => n);
  const hints = missing.map((kind) => {
    const candidates = producers(kind).filter((candidate) => candidate !== name);
    return `"${kind}"${candidates.length > 0 ? ` (made by ${candidates.join(', ')})` : ''}`;
  });
  const givenText = given.map((input) => `${input.need} (${input.kind})`).join(', ') || 'nothing';
  const at = ['stages', name, 'needs'];
  return [
    {
      location: locate(source, at),
      path: at,
      message: `${loaded.type.name} reads ${missing.length === 1 ? 'an input' : 'inputs'} of kind ${hints.join(' and ')}, which its needs do not give; they give ${givenText}`,
    },
  ];
}

/**
 * Where under `value` the string `file` was written: the key path of a string equal to it, or of
 * the folder it lies in (a stage may name `init: ./model` and read `./model/config.json`).
 */
function pathOfValue(value: unknown, file: string): KeyPath | undefined {
  if (typeof value === 'string') return value === file || file.startsWith(`${value.replace(/\/+$/, '')}/`) ? [] : undefined;
  if (value === null || typeof value !== 'object') return undefined;
  for (const [key, child] of Object.entries(value)) {
    const found = pathOfValue(child, file);
    if (found) return [Array.isArray(value) ? Number(key) : key, ...found];
  }
  return undefined;
}
