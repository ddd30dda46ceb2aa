/**
 * Step checkpoints in a stage's work folder:
 *   checkpoints/step-00000012/state.json   (+ whatever `write` put there)
 *   checkpoints/LATEST                     one line: the folder name of the newest complete one
 * A checkpoint is written into a temp folder, renamed into place, and only then named by LATEST
 * (itself replaced atomically), so a kill at any moment leaves the previous one usable.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { StepCheckpoint, StepCheckpoints } from '../stage-api.ts';
import { readJson, readText, writeFileAtomic } from '../store/fs-util.ts';

const LATEST = 'LATEST';
const STATE = 'state.json';
/** Two, so that the one LATEST names is never the one being deleted. */
const KEEP = 2;

function checkpointsDir(workDir: string): string {
  return path.join(workDir, 'checkpoints');
}

async function latestName(dir: string): Promise<string | undefined> {
  return (await readText(path.join(dir, LATEST)))?.trim() || undefined;
}

/** The step of the newest checkpoint in `workDir`, for `plan` to say "resuming from step N". */
export async function latestCheckpointStep(workDir: string): Promise<number | undefined> {
  const name = await latestName(checkpointsDir(workDir));
  if (!name) return undefined;
  return (await readJson<{ step: number }>(path.join(checkpointsDir(workDir), name, STATE)))?.step;
}

export function stepCheckpoints(workDir: string): StepCheckpoints {
  const dir = checkpointsDir(workDir);
  return {
    async latest<State>(): Promise<StepCheckpoint<State> | undefined> {
      const name = await latestName(dir);
      if (!name) return undefined;
      const saved = await readJson<{ step: number; state: State }>(path.join(dir, name, STATE));
      return saved ? { step: saved.step, state: saved.state, dir: path.join(dir, name) } : undefined;
    },
    async save<State>(step: number, state: State, write?: (target: string) => Promise<void>): Promise<void> {
      const name = `step-${String(step).padStart(8, '0')}`;
      const tmp = path.join(dir, `tmp-${name}-${randomBytes(4).toString('hex')}`);
      await fs.mkdir(tmp, { recursive: true });
      if (write) await write(tmp);
      await fs.writeFile(path.join(tmp, STATE), JSON.stringify({ step, state }));
      await fs.rm(path.join(dir, name), { recursive: true, force: true });
      await fs.rename(tmp, path.join(dir, name));
      await writeFileAtomic(path.join(dir, LATEST), `${name}\n`);
      const old = (await fs.readdir(dir)).filter((entry) => entry.startsWith('step-')).sort().slice(0, -KEEP);
      await Promise.all(old.map((entry) => fs.rm(path.join(dir, entry), { recursive: true, force: true })));
    },
  };
}
