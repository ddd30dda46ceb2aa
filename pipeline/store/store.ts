/**
 * The artifact store: a folder with
 *   objects/<fingerprint>/          published artifacts (payload + manifest.json), never modified
 *   refs/<pipeline>/<stage>         one line: the fingerprint that is this stage's current artifact
 *   work/<fingerprint>/             scratch, step checkpoints and the output being written (out-<id>/);
 *                                   kept across a crash, removed after a successful publish
 *   work/<name>/                    a named cache a stage keeps across its fingerprints (not a fingerprint)
 *   logs/<pipeline>/<stage>.log     the last run's log of each stage
 *   runs/<pipeline>/<time>.json     one record per `pipeline run`; latest.json is the newest
 *   trash/                          what is being deleted (see trash.ts); emptied by the next run or gc
 *   lock                            held by a run (see lock.ts)
 * An object counts only when its manifest is valid and its files match it (object-check.ts);
 * published objects are read-only. It knows nothing about the DAG or stages.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Manifest } from '../stage-api.ts';
import { DiskFullError, explainDiskFull, readJson, readText, writeFileAtomic } from './fs-util.ts';
import { faultPoint } from './fault.ts';
import { checkObject, describeProblems, MANIFEST, type ObjectCheck } from './object-check.ts';
import { discard, emptyTrash, makeReadOnly, moveToTrash, removeTrashed } from './trash.ts';

export { MANIFEST };
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

  /** The object is there, whole and unchanged at the cheap depth (see object-check.ts). */
  async hasObject(fingerprint: string): Promise<boolean> {
    return (await this.checkObject(fingerprint)).state === 'ok';
  }

  checkObject(fingerprint: string, depth: 'cheap' | 'full' = 'cheap'): Promise<ObjectCheck> {
    return checkObject(this.objectDir(fingerprint), fingerprint, depth);
  }

  /**
   * The manifest of a whole object; undefined when there is none; a StoreError naming the folder and
   * what is wrong when the object is damaged (a broken manifest, a missing or changed file).
   */
  async readManifest(fingerprint: string): Promise<Manifest | undefined> {
    const checked = await this.checkObject(fingerprint);
    if (checked.state === 'missing') return undefined;
    if (checked.state === 'damaged') throw new StoreError(damagedMessage(this.objectDir(fingerprint), checked.problems));
    return checked.manifest;
  }

  /** Removes an object so that a kill cannot leave half of it in objects/ (see trash.ts). */
  removeObject(fingerprint: string): Promise<void> {
    return discard(this.root, this.objectDir(fingerprint));
  }

  /** Removes a work folder (or named cache) the same way: a half-deleted checkpoint must not be resumed from. */
  removeWork(name: string): Promise<void> {
    return discard(this.root, this.workDir(name));
  }

  /** Removes what killed deletes left in the trash. Call under the store lock. */
  emptyTrash(): Promise<string[]> {
    return emptyTrash(this.root);
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
   * artifact appears whole or not at all, and is then made read-only. What is in its place first
   * goes to the trash when it is damaged (a folder a killed delete left) or `replace` is set
   * (`run --force`); a whole object already there is kept and ours dropped (same fingerprint, same
   * content by construction).
   */
  async publish(outDir: string, manifest: Manifest, options: { replace?: boolean } = {}): Promise<string> {
    const manifestFile = path.join(outDir, MANIFEST);
    const text = `${JSON.stringify(manifest, null, 2)}\n`;
    await fs.writeFile(manifestFile, text).catch(async (error: unknown) => {
      throw await explainDiskFull(error, manifestFile, Buffer.byteLength(text));
    });
    faultPoint('publish:manifest-written');
    const target = this.objectDir(manifest.fingerprint);
    await fs.mkdir(path.dirname(target), { recursive: true });
    let replaced: string | undefined;
    const existing = await this.checkObject(manifest.fingerprint);
    if (existing.state === 'ok' && !options.replace) {
      await discard(this.root, outDir);
      return target;
    }
    if (existing.state !== 'missing') {
      replaced = await moveToTrash(this.root, target);
      faultPoint('publish:old-trashed');
    }
    try {
      await fs.rename(outDir, target);
    } catch (error) {
      // Another process published the same fingerprint meanwhile (not under this lock: a remote job).
      const code = (error as NodeJS.ErrnoException).code;
      if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !(await this.hasObject(manifest.fingerprint))) throw error;
      await discard(this.root, outDir);
      return target;
    }
    await makeReadOnly(target);
    if (replaced) await removeTrashed(replaced);
    return target;
  }

  async writeRunRecord(pipeline: string, record: { started: string }): Promise<string> {
    const file = this.runRecordPath(pipeline, record.started);
    const text = `${JSON.stringify(record, null, 2)}\n`;
    await writeFileAtomic(file, text);
    await writeFileAtomic(this.latestRunPath(pipeline), text);
    return file;
  }

  private runRecordPath(pipeline: string, started: string): string {
    return path.join(this.runsDir(pipeline), `${started.replace(/[:.]/g, '-')}.json`);
  }

  /**
   * A run's last record. On a full disk no "running" record may outlive the run (status would call
   * it interrupted): this run's own record of its start is removed, freeing its blocks, and
   * latest.json gets the record in one line with `error` set; failing that, latest.json is removed
   * and written in place, and failing even that, it is left out. Throws the DiskFullError after, for
   * the caller to report.
   */
  async writeFinalRunRecord(pipeline: string, record: { started: string }): Promise<void> {
    try {
      await this.writeRunRecord(pipeline, record);
      return;
    } catch (error) {
      if (!(error instanceof DiskFullError)) throw error;
      await fs.rm(this.runRecordPath(pipeline, record.started), { force: true });
      const latest = this.latestRunPath(pipeline);
      const text = `${JSON.stringify({ ...record, error: error.message })}\n`;
      try {
        await writeFileAtomic(latest, text);
      } catch {
        await fs.rm(latest, { force: true });
        await fs.writeFile(latest, text).catch(() => fs.rm(latest, { force: true }));
      }
      throw error;
    }
  }

  /** Where the newest run record of `pipeline` is. */
  latestRunPath(pipeline: string): string {
    return path.join(this.runsDir(pipeline), 'latest.json');
  }

  readLatestRun<T>(pipeline: string): Promise<T | undefined> {
    return readJson<T>(path.join(this.runsDir(pipeline), 'latest.json'));
  }
}

/** The one-line message for a damaged object: where it is, what is wrong, and what to run. */
export function damagedMessage(dir: string, problems: readonly string[]): string {
  return `the artifact ${dir} is damaged: ${describeProblems(problems)} (\`pipeline verify --repair\` removes it so the next run rebuilds it)`;
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return (await fs.readdir(dir)).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}
