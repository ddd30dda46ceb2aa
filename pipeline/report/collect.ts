/**
 * Everything the report shows, read from the store: the last run record (states, durations, cache
 * hits), each stage's current manifest, its `metrics.jsonl` curves and its report fragment. Reading
 * never fails on one bad file: what could not be read is listed in `problems`, with file and line.
 */
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { readLastRun, type LastRun, type RunRecord } from '../commands/run.ts';
import type { LoadedConfig } from '../config/load.ts';
import { METRICS_FILE } from '../executor/context.ts';
import { topologicalOrder } from '../graph.ts';
import type { Manifest } from '../stage-api.ts';
import { damagedMessage, type ArtifactStore } from '../store/store.ts';
import { fragmentProblem, REPORT_FRAGMENT_FILE, type ReportFragment } from './fragment.ts';

/** One point of a curve: `metrics.jsonl` line `{step, loss: 2.1, ...}` gives one point per numeric key. */
export interface CurvePoint {
  step: number;
  key: string;
  value: number;
}

export type StageState = RunRecord['stages'][number]['state'] | 'built' | 'not built';

export interface StageReport {
  name: string;
  type: string;
  needs: string[];
  state: StageState;
  cached: boolean;
  /** Seconds the last run spent on it (0 when cached), else the artifact's build time. */
  durationS: number | null;
  decision: string | null;
  fingerprint: string | null;
  manifest: Manifest | null;
  curves: CurvePoint[];
  fragment: ReportFragment | null;
}

export interface ReportData {
  pipeline: string;
  configFile: string;
  storeRoot: string;
  run: Pick<LastRun, 'started' | 'finished' | 'status'> | null;
  stages: StageReport[];
  /** Files or lines that could not be read, each naming the file (and line). */
  problems: string[];
}

/** Numeric values only: strings (a model name) and nulls are labels, not curve points. */
export async function readCurves(file: string, problems: string[]): Promise<CurvePoint[]> {
  if (!existsSync(file)) return [];
  const points: CurvePoint[] = [];
  const lines = (await fs.readFile(file, 'utf8')).split('\n');
  let skipped = 0;
  lines.forEach((text, i) => {
    if (text.trim() === '') return;
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(text) as Record<string, unknown>;
    } catch (error) {
      skipped++;
      problems.push(`${file}:${i + 1}: invalid JSON (${(error as Error).message}); line skipped`);
      return;
    }
    if (typeof record.step !== 'number') {
      skipped++;
      problems.push(`${file}:${i + 1}: no numeric "step"; line skipped`);
      return;
    }
    for (const [key, value] of Object.entries(record)) {
      if (key === 'step' || key === 'time' || typeof value !== 'number' || !Number.isFinite(value)) continue;
      points.push({ step: record.step, key, value });
    }
  });
  if (skipped > 0) problems.push(`${file}: ${skipped} of ${lines.filter((l) => l.trim()).length} lines skipped`);
  return points;
}

async function readFragment(dir: string, problems: string[]): Promise<ReportFragment | null> {
  const file = path.join(dir, REPORT_FRAGMENT_FILE);
  if (!existsSync(file)) return null;
  let value: unknown;
  try {
    value = JSON.parse(await fs.readFile(file, 'utf8'));
  } catch (error) {
    problems.push(`${file}: invalid JSON (${(error as Error).message}); fragment not shown`);
    return null;
  }
  const problem = fragmentProblem(value);
  if (problem) {
    problems.push(`${file}: ${problem}; fragment not shown`);
    return null;
  }
  return value as ReportFragment;
}

export async function collectReport(loaded: LoadedConfig, store: ArtifactStore): Promise<ReportData> {
  const pipeline = loaded.config.name;
  const problems: string[] = [];
  const run = (await readLastRun(store, pipeline)) ?? null;
  const lastRun = new Map((run?.stages ?? []).map((s) => [s.name, s]));
  const graph = new Map([...loaded.stages.keys()].map((name) => [name, loaded.config.stages[name]?.needs ?? []]));
  const stages: StageReport[] = [];
  for (const name of topologicalOrder(graph)) {
    const stage = loaded.stages.get(name);
    const recorded = lastRun.get(name);
    const fingerprint = (await store.readRef(pipeline, name)) ?? null;
    const checked = fingerprint ? await store.checkObject(fingerprint) : undefined;
    const manifest = checked?.state === 'ok' ? checked.manifest : null;
    if (fingerprint && checked?.state === 'missing') problems.push(`${store.objectDir(fingerprint)}: the ref of ${name} points at an artifact with no manifest`);
    if (fingerprint && checked?.state === 'damaged') problems.push(damagedMessage(store.objectDir(fingerprint), checked.problems));
    const dir = manifest && fingerprint ? store.objectDir(fingerprint) : undefined;
    stages.push({
      name,
      type: stage?.type.name ?? '?',
      needs: graph.get(name) ?? [],
      state: recorded?.state ?? (manifest ? 'built' : 'not built'),
      cached: recorded?.cached ?? false,
      durationS: recorded ? recorded.durationS : (manifest?.durationS ?? null),
      decision: recorded?.decision ?? null,
      fingerprint,
      manifest,
      curves: dir ? await readCurves(path.join(dir, METRICS_FILE), problems) : [],
      fragment: dir ? await readFragment(dir, problems) : null,
    });
  }
  return {
    pipeline,
    configFile: loaded.file,
    storeRoot: store.root,
    run: run ? { started: run.started, finished: run.finished, status: run.status } : null,
    stages,
    problems,
  };
}
