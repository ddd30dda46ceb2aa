/**
 * A deployment built from scratch for the serving tests: a tiny world, an untrained answer-first
 * checkpoint (test/stages/eval-fixtures/tiny-checkpoint.ts; its words are noise, what the tests
 * check holds whatever it says), a distilled model and a precompute stage, in a temp folder.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { builtArtifacts } from '../../pipeline/commands/artifacts.ts';
import { builtinStages } from '../../stages/registry.ts';
import { startDeploymentServer, type ServeCommandOptions } from '../../stages/lib/serving/serve-command.ts';
import type { RunningServer } from '../../stages/lib/serving/server.ts';

export const root = path.join(import.meta.dirname, '..', '..');
export const bin = path.join(root, 'bin', 'pipeline.js');
const fixture = path.join(root, 'test', 'stages', 'eval-fixtures', 'tiny-checkpoint.ts');

export const deploymentConfig = (name: string, precompute = '{ max_new_tokens: 4 }') => `name: ${name}
seed: 3
store: store
stages:
  world: { uses: world, with: { queries: 24, itemsPerType: 2, candidates: 4 } }
  kg: { uses: kg, needs: [world] }
  icl: { uses: icl, needs: [world, kg], with: { facts: 0, shots: 0, rules: none, maxTokens: 256 } }
  sft: { uses: ${fixture}, needs: [icl], with: { answer_first: true } }
  distill: { uses: distill, needs: [world, kg, icl, sft], with: { extra_per_query: 1, pool_limit: 8, dev_limit: 4, max_new_tokens: 4, epochs: 3, kg_features: true } }
  serve: { uses: precompute, needs: [world, kg, icl, sft, distill], with: ${precompute} }
`;

/** A loopback port nothing listens on (for a redis-server the test starts). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

export interface BuiltDeployment {
  dir: string;
  /** Runs `pipeline <args>` in the folder; its stdout. */
  cli(...args: string[]): string;
  /** The artifact folder of a built stage. */
  artifact(stage: string): string;
  serve(options?: Partial<ServeCommandOptions>): Promise<RunningServer>;
  remove(): void;
}

export function buildDeployment(name: string, config = deploymentConfig(name)): BuiltDeployment {
  const dir = mkdtempSync(path.join(os.tmpdir(), `${name}-`));
  writeFileSync(path.join(dir, 'pipeline.yaml'), config);
  const cli = (...args: string[]) => execFileSync(process.execPath, [bin, ...args], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  cli('run', 'pipeline.yaml');
  const cliIo = { out: () => {}, err: () => {}, cwd: dir, stages: builtinStages };
  return {
    dir,
    cli,
    artifact: (stage) => path.join(dir, 'store', 'objects', readFileSync(path.join(dir, 'store', 'refs', name, stage), 'utf8').trim()),
    serve: async (options = {}) => startDeploymentServer(await builtArtifacts('pipeline.yaml', {}, cliIo), { host: '127.0.0.1', port: 0, bodyLimit: 1_048_576, maxItems: 16, memoEntries: 64, logger: false, ...options }),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
