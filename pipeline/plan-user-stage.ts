/**
 * Planning a user stage that was not imported (read-only commands never run a `uses: ./x.ts` file:
 * README, "Reward files and user stages are trusted code"). Two parts of its fingerprint are its
 * code's answers: its `version` and the files it declares (`userFiles`). They are taken from a
 * manifest that code wrote for the same module bytes and the same `with:` as written: the stage's
 * current artifact (its ref) first, else any artifact in the store of a stage of that name. `run`
 * imports the module and asks it; with the same bytes and params it answers the same, so `plan`
 * and `status` call cached exactly what `run` calls cached, and stale what it rebuilds.
 * With no such manifest no stored artifact can have the stage's fingerprint (one would have been
 * found): the stage will run, and its fingerprint is a forecast made from its ref's manifest.
 */
import * as path from 'node:path';
import type { UserStageSource } from './config/loaded.ts';
import { canonicalJson, type Fingerprint } from './fingerprint.ts';
import type { Manifest } from './stage-api.ts';
import { BrokenJsonError, readJson } from './store/fs-util.ts';
import { MANIFEST } from './store/object-check.ts';
import type { ArtifactStore } from './store/store.ts';

export interface UserStageAnswers {
  version: string;
  /** Every user file of the stage, its module first, as written. */
  files: string[];
  /** False: no manifest matched, the answers are a forecast (the stage runs either way). */
  exact: boolean;
}

export async function unimportedStageAnswers(
  store: ArtifactStore,
  stage: string,
  uses: string,
  source: UserStageSource,
  moduleHash: string | undefined,
  previous: Fingerprint | undefined,
): Promise<UserStageAnswers> {
  const written = canonicalJson(source.written);
  const sameCode = (manifest: Manifest | undefined): boolean =>
    manifest?.stage === stage && manifest.type === uses && manifest.userFiles?.[source.file] === moduleHash && canonicalJson(manifest.params) === written;
  const answers = (manifest: Manifest, exact: boolean): UserStageAnswers => ({
    version: manifest.version,
    files: [source.file, ...Object.keys(manifest.userFiles).filter((file) => file !== source.file)],
    exact,
  });

  const current = previous === undefined ? undefined : await manifestAt(store, previous);
  if (current && sameCode(current)) return answers(current, true);
  // The module or `with:` changed since the ref's artifact; one built before may match (a file
  // edited and changed back). Only manifests are read, once per such stage and plan.
  for (const fingerprint of await store.listObjects()) {
    if (fingerprint === previous) continue;
    const manifest = await manifestAt(store, fingerprint);
    if (manifest && sameCode(manifest)) return answers(manifest, true);
  }
  if (current?.stage === stage && current.type === uses && current.userFiles) return answers(current, false);
  return { version: '', files: [source.file], exact: false };
}

/** The manifest in objects/<fp>, if it parses; whether the object is whole is the planner's check. */
async function manifestAt(store: ArtifactStore, fingerprint: Fingerprint): Promise<Manifest | undefined> {
  try {
    return await readJson<Manifest>(path.join(store.objectDir(fingerprint), MANIFEST));
  } catch (error) {
    if (error instanceof BrokenJsonError) return undefined;
    // A name in objects/ that is not a folder (or not readable) holds no manifest.
    if (['ENOTDIR', 'EACCES', 'EISDIR'].includes((error as NodeJS.ErrnoException).code ?? '')) return undefined;
    throw error;
  }
}
