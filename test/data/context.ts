/**
 * A hand-made StageContext, so a stage's `run` can be tested without the orchestrator: inputs are
 * given as folders, logs and metrics are collected in arrays.
 */
import { mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Rng } from '../../pipeline/rng.ts';
import type { ArtifactKind, InputArtifact, StageContext, StageType } from '../../pipeline/stage-api.ts';

export interface TestContext<P> extends StageContext<P> {
  logs: string[];
}

export function testContext<P>(
  stage: StageType,
  options: { params?: unknown; inputs?: { stage: string; kind: ArtifactKind; dir: string }[]; configDir?: string; seed?: number },
): TestContext<P> {
  const root = mkdtempSync(path.join(os.tmpdir(), `stage-${stage.name}-`));
  const outDir = path.join(root, 'out');
  const workDir = path.join(root, 'work');
  mkdirSync(outDir);
  mkdirSync(workDir);
  const all: InputArtifact[] = (options.inputs ?? []).map((i) => ({ ...i, fingerprint: `test-${i.stage}`, manifest: {} as InputArtifact['manifest'] }));
  const logs: string[] = [];
  const seed = options.seed ?? 13;
  return {
    pipeline: 'test',
    stage: stage.name,
    params: stage.params.parse(options.params ?? {}) as P,
    inputs: {
      all,
      one(kind) {
        const found = all.filter((i) => i.kind === kind);
        if (found.length !== 1) throw new Error(`test context: expected one ${kind} input, found ${found.length}`);
        return found[0] as InputArtifact;
      },
      many: (kind) => all.filter((i) => i.kind === kind),
      byStage: (name) => all.find((i) => i.stage === name),
    },
    outDir,
    workDir,
    configDir: options.configDir ?? process.cwd(),
    seed,
    rng: new Rng(seed, stage.name),
    engine: { backend: 'cpu' },
    log: { info: (m) => logs.push(`info: ${m}`), warn: (m) => logs.push(`warn: ${m}`), debug: () => {} },
    metrics: { log: () => {} },
    progress: { update: () => {} },
    signal: new AbortController().signal,
    checkpoints: { latest: async () => undefined, save: async () => {} },
    logs,
  };
}
