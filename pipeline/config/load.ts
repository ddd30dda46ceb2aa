/**
 * Config phase: YAML text -> a validated, typed pipeline, or every problem found at once.
 * Order: YAML syntax (nothing else can be checked without it; yaml-text.ts), duplicate keys and
 * `--set` overrides, the top-level schema, each stage's `uses` and `with`, the graph (missing needs,
 * cycles), then what each stage needs from outside its YAML (input kinds, files, its own checks:
 * stage-checks.ts).
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { StageType } from '../stage-api.ts';
import { didYouMean, type Diagnostic } from '../diagnostics.ts';
import { checkGraph } from '../graph.ts';
import { issuesToDiagnostics } from './issues.ts';
import { locate, type YamlSource } from './locate.ts';
import { applyOverrides } from './overrides.ts';
import { applyRenamedParams, issuesAsWritten } from './renamed-params.ts';
import { pipelineConfigSchema, type PipelineConfig } from './schema.ts';
import type { LoadedConfig, LoadedStage } from './loaded.ts';
import { checkStages, type StageToCheck } from './stage-checks.ts';
import { describeUserStage, isUserStagePath, loadUserStage } from './stage-types.ts';
import { configValue, parseConfigYaml } from './yaml-text.ts';

export type { LoadedConfig, LoadedStage, UserStageSource } from './loaded.ts';

/** `warnings`: what loaded but should change (a renamed key); with errors they are among `diagnostics`. */
export type LoadResult = { ok: true; loaded: LoadedConfig; warnings: Diagnostic[] } | { ok: false; diagnostics: Diagnostic[] };

export async function loadConfig(
  displayPath: string,
  options: {
    overrides?: readonly string[];
    registry: readonly StageType[];
    cwd?: string;
    /**
     * Import `uses: ./x.ts` modules (run their code): `run` only. Without it a user stage is checked
     * without running it and its own params checks wait for `run` (describeUserStage).
     */
    importUserStages?: boolean;
  },
): Promise<LoadResult> {
  const file = path.resolve(options.cwd ?? process.cwd(), displayPath);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (error) {
    return { ok: false, diagnostics: [{ location: { origin: displayPath }, message: `cannot read the config: ${(error as Error).message}` }] };
  }
  const { doc, sourceFile, fatal, diagnostics: yamlProblems } = parseConfigYaml(displayPath, text);
  const source: YamlSource = { file: sourceFile, doc, overrides: [] };
  if (fatal.length > 0) return { ok: false, diagnostics: fatal };
  if (doc.contents === null) {
    return {
      ok: false,
      diagnostics: [{ location: { file: sourceFile, start: 0, end: 1 }, message: 'the file is empty; expected a map with "name" and "stages"' }],
    };
  }

  // Duplicate keys are reported with every other error: the value a later key gave is still checked.
  const diagnostics = [...yamlProblems, ...applyOverrides(source, options.overrides ?? [])];
  const converted = configValue(doc, sourceFile);
  if ('diagnostic' in converted) return { ok: false, diagnostics: [...diagnostics, converted.diagnostic] };
  const raw = converted.value;
  const parsed = pipelineConfigSchema.safeParse(raw);
  if (!parsed.success) diagnostics.push(...issuesToDiagnostics(parsed.error.issues, raw, pipelineConfigSchema, source));
  // Stages are checked even when the top level has errors elsewhere, so one run shows everything.
  const rawStages = (raw as { stages?: unknown })?.stages;
  const stageEntries =
    parsed.success ? Object.entries(parsed.data.stages) : rawStages && typeof rawStages === 'object' ? Object.entries(rawStages) : [];

  const dir = path.dirname(file);
  const byName = new Map(options.registry.map((type) => [type.name, type]));
  const stages = new Map<string, LoadedStage>();
  const graph = new Map<string, string[]>();
  const userStages = new Map<string, ReturnType<typeof loadUserStage>>();
  const resolveUserStage = options.importUserStages === true ? loadUserStage : describeUserStage;
  const toCheck = new Map<string, StageToCheck>();
  for (const [name, stageRaw] of stageEntries) {
    const stage = stageRaw as { uses?: unknown; with?: unknown; needs?: unknown };
    graph.set(name, Array.isArray(stage?.needs) ? stage.needs.filter((n): n is string => typeof n === 'string') : []);
    if (typeof stage?.uses !== 'string' || stage.uses === '') continue;
    const usesPath = ['stages', name, 'uses'];
    let type: StageType | undefined;
    let moduleFile: string | undefined;
    if (isUserStagePath(stage.uses)) {
      if (!userStages.has(stage.uses)) userStages.set(stage.uses, resolveUserStage(stage.uses, dir));
      const resolved = await (userStages.get(stage.uses) as ReturnType<typeof loadUserStage>);
      if ('error' in resolved) {
        diagnostics.push({ location: locate(source, usesPath), path: usesPath, message: resolved.error });
        continue;
      }
      ({ type, userFile: moduleFile } = resolved);
    } else {
      type = byName.get(stage.uses);
      if (!type) {
        diagnostics.push({
          location: locate(source, usesPath),
          path: usesPath,
          message: `unknown stage type "${stage.uses}"${didYouMean(stage.uses, byName.keys())}; see \`pipeline stages\`, or give a path like ./my-stage.ts`,
        });
        continue;
      }
    }
    const written = stage.with ?? {};
    const renamed = applyRenamedParams(written, type.renamedParams, source, ['stages', name, 'with']);
    diagnostics.push(...renamed.diagnostics);
    const withRaw = renamed.value;
    const params = type.params.safeParse(withRaw);
    if (!params.success) {
      diagnostics.push(...issuesToDiagnostics(issuesAsWritten(params.error.issues, renamed.writtenAs), written, type.params, source, ['stages', name, 'with']));
      continue;
    }
    // As written, before renames: a user stage not imported has no renames to apply, and plan and run must fingerprint it alike.
    const userStage = moduleFile === undefined ? undefined : { file: moduleFile, imported: options.importUserStages === true, written };
    const loadedStage = { name, type, params: params.data, userStage };
    stages.set(name, loadedStage);
    toCheck.set(name, { loaded: loadedStage, needs: graph.get(name) ?? [], withRaw });
  }
  diagnostics.push(...checkGraph(graph, source));
  diagnostics.push(...(await checkStages(toCheck, source, dir)));

  const warnings = diagnostics.filter((d) => d.severity === 'warning');
  if (warnings.length < diagnostics.length || !parsed.success) return { ok: false, diagnostics };
  return { ok: true, loaded: { file, dir, source, config: parsed.data, stages, overrides: options.overrides ?? [] }, warnings };
}
