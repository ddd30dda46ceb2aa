/**
 * The artifact store: a folder with
 *   objects/<fingerprint>/          published artifacts (payload + manifest.json), never modified
 *   refs/<pipeline>/<stage>         one line: the fingerprint that is this stage's current artifact
 *   work/<fingerprint>/             scratch, step checkpoints and the output being written (out-<id>/);
 *                                   kept across a crash, removed after a successful publish
 *   work/<name>/                    a named cache a stage keeps across its fingerprints (not a fingerprint)
 *   logs/<pipeline>/<stage>.log     the last run's log of each stage
 *   runs/<pipeline>/<time>.json     one record per `pipeline run`; latest.json is the newest
 *   lock                            held by a run (see lock.ts)
 * It knows nothing about the DAG or stages.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Manifest } from '../stage-api.ts';
import { exists, readJson, readText, writeFileAtomic } from './fs-util.ts';

export const MANIFEST = 'manifest.json';
const FINGERPRINT = /^[0-9a-f]{64}$/;

/** A sha256 in hex, as fingerprints are; other names under work/ are named caches (see gc). */
export function isFingerprint(name: string): boolean {
  return FINGERPRINT.test(name);
}

/** The store holds something it never writes (a hand-edited ref): an expected failure, shown without a stack. */
export class StoreError extends Error {}

export class ArtifactStore {
  constructor(readonly root: string) {}

  objectDir(fingerprint: string): string {
    return path.join(this.root, 'objects', fingerprint);
  }

  workDir(fingerprint: string): string {
    return path.join(this.root, 'work', fingerprint);
  }

  logPath(pipeline: string, stage: string): string {
    return path.join(this.root, 'logs', pipeline, `${stage}.log`);
  }

  runsDir(pipeline: string): string {
    return path.join(this.root, 'runs', pipeline);
  }

  hasObject(fingerprint: string): Promise<boolean> {
    return exists(path.join(this.objectDir(fingerprint), MANIFEST));
  }

  readManifest(fingerprint: string): Promise<Manifest | undefined> {
    return readJson<Manifest>(path.join(this.objectDir(fingerprint), MANIFEST));
  }

  /** The fingerprint a ref names; a ref that holds anything else is refused, since it becomes a path. */
  async readRef(pipeline: string, stage: string): Promise<string | undefined> {
    const file = path.join(this.root, 'refs', pipeline, stage);
    const text = (await readText(file))?.trim();
    if (text !== undefined && !isFingerprint(text)) {
      throw new StoreError(`${file}: expected a fingerprint (64 hex digits), found ${JSON.stringify(text.slice(0, 80))}`);
    }
    return text;
  }

  writeRef(pipeline: string, stage: string, fingerprint: string): Promise<void> {
    return writeFileAtomic(path.join(this.root, 'refs', pipeline, stage), `${fingerprint}\n`);
  }

  /** Pipeline -> stage -> fingerprint, for every ref in the store. */
  async allRefs(): Promise<Map<string, Map<string, string>>> {
    const refs = new Map<string, Map<string, string>>();
    for (const pipeline of await readdirOrEmpty(path.join(this.root, 'refs'))) {
      const stages = new Map<string, string>();
      for (const stage of await readdirOrEmpty(path.join(this.root, 'refs', pipeline))) {
        if (stage.includes('.tmp-')) continue;
        const fingerprint = await this.readRef(pipeline, stage);
        if (fingerprint) stages.set(stage, fingerprint);
      }
      refs.set(pipeline, stages);
    }
    return refs;
  }

  listObjects(): Promise<string[]> {
    return readdirOrEmpty(path.join(this.root, 'objects'));
  }

  listWork(): Promise<string[]> {
    return readdirOrEmpty(path.join(this.root, 'work'));
  }

  /**
   * Writes the manifest into `outDir` and renames `outDir` to `objects/<fingerprint>`: the
   * artifact appears whole or not at all. If another process published the same fingerprint
   * first, ours is dropped (same fingerprint, same content by construction).
   */
  async publish(outDir: string, manifest: Manifest): Promise<string> {
    await fs.writeFile(path.join(outDir, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    const target = this.objectDir(manifest.fingerprint);
    await fs.mkdir(path.dirname(target), { recursive: true });
    try {
      await fs.rename(outDir, target);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if ((code === 'ENOTEMPTY' || code === 'EEXIST') && (await this.hasObject(manifest.fingerprint))) {
        await fs.rm(outDir, { recursive: true, force: true });
      } else {
        throw error;
      }
    }
    return target;
  }

  async writeRunRecord(pipeline: string, record: { started: string }): Promise<string> {
    const dir = this.runsDir(pipeline);
    const file = path.join(dir, `${record.started.replace(/[:.]/g, '-')}.json`);
    const text = `${JSON.stringify(record, null, 2)}\n`;
    await writeFileAtomic(file, text);
    await writeFileAtomic(path.join(dir, 'latest.json'), text);
    return file;
  }

  readLatestRun<T>(pipeline: string): Promise<T | undefined> {
    return readJson<T>(path.join(this.runsDir(pipeline), 'latest.json'));
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return (await fs.readdir(dir)).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}
