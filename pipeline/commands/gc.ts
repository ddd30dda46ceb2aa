/**
 * `pipeline gc`: frees what nothing needs, in a store that several pipelines may share. It keeps
 * - every object a ref of any pipeline points at, and every object the given config (as it stands,
 *   with its --set) plans as cached, so `plan` says the same before and after;
 * - every work folder holding a step checkpoint, whichever pipeline left it, and the work folders of
 *   the config's unbuilt stages that hold something to resume from (a checkpoint, or a stage's own
 *   scratch such as labels written so far): deleting one would make the next run start over.
 *   `--resumable` deletes these too. A work folder holding only a failed attempt's output (out-*)
 *   goes: no run resumes from it;
 * - named caches: entries of work/ that are not fingerprints, which a stage keeps across its
 *   fingerprints (e.g. cot's OpenAI answers, paid for). `--clear-cache NAME` deletes one.
 * It decides under the store lock, so it never races a run, and `--dry-run` decides the same way.
 * What goes is moved to the store's trash first and removed there (store/trash.ts), so a kill
 * mid-way never leaves half an object; the trash a killed gc or run left is emptied first.
 */
import * as fs from 'node:fs/promises';
import { latestCheckpointStep } from '../executor/checkpoints.ts';
import { shortFingerprint } from '../fingerprint.ts';
import { acquireStoreLock, describeHolder } from '../store/lock.ts';
import { dirBytes, exists } from '../store/fs-util.ts';
import { isFingerprint, type ArtifactStore } from '../store/store.ts';
import type { Plan } from '../plan.ts';
import { EXIT, loadOrThrow, planOrThrow, storeFor, type CommandIo, type ConfigOptions } from './common.ts';

export interface GcOptions extends ConfigOptions {
  dryRun?: boolean;
  resumable?: boolean;
  clearCache?: string[];
  breakLock?: boolean;
}

interface Verdict {
  what: 'object' | 'work' | 'cache';
  name: string;
  /** Its folder's name under objects/ or work/ (a fingerprint, or a named cache's name). */
  fingerprint: string;
  dir: string;
  /** Why it stays; undefined when it goes. */
  kept?: string;
}

export async function gcCommand(configPath: string, options: GcOptions, io: CommandIo): Promise<number> {
  const loaded = await loadOrThrow(configPath, options, io);
  const store = storeFor(loaded, options, io);
  // Taking the lock would create the store: a store that is not there has nothing to collect.
  if (!(await exists(store.root))) {
    io.out(`no store at ${store.root}: nothing to collect`);
    return EXIT.ok;
  }
  const lock = await acquireStoreLock(store.root, {
    wait: true,
    command: `pipeline gc ${configPath}`,
    breakLock: options.breakLock,
    onWait: (holder) => io.err(`waiting for the store lock held by ${describeHolder(holder)} ...`),
    onTakeover: (message) => io.err(message),
  });
  try {
    const unknownCaches = (options.clearCache ?? []).filter((name) => isFingerprint(name));
    if (unknownCaches.length > 0) {
      io.err(`error: --clear-cache takes a cache name (a folder of ${store.root}/work that is not a fingerprint), not ${unknownCaches.join(', ')}`);
      return EXIT.usage;
    }
    if (!options.dryRun) for (const left of await store.emptyTrash()) io.out(`removed trash ${left} (left by an interrupted delete)`);
    // Planned under the lock, so a run that just finished is seen.
    const plan = await planOrThrow(loaded, store, {});
    const verdicts = [...(await judgeObjects(store, plan)), ...(await judgeWork(store, plan, options))];
    let bytes = 0;
    for (const item of verdicts) {
      if (item.kept && item.what !== 'object') io.out(`kept ${item.what} ${item.kept}`);
      if (item.kept) continue;
      const size = await dirBytes(item.dir);
      bytes += size;
      io.out(`${options.dryRun ? 'would remove' : 'removed'} ${item.what} ${item.name} (${size} B)`);
      if (!options.dryRun) await (item.what === 'object' ? store.removeObject(item.fingerprint) : store.removeWork(item.fingerprint));
    }
    const keptObjects = verdicts.filter((item) => item.what === 'object' && item.kept).length;
    io.out(`${options.dryRun ? 'would free' : 'freed'} ${bytes} B; kept ${keptObjects} referenced objects`);
    return EXIT.ok;
  } finally {
    await lock.release();
  }
}

async function judgeObjects(store: ArtifactStore, plan: Plan): Promise<Verdict[]> {
  const kept = new Set<string>();
  for (const stages of (await store.allRefs()).values()) for (const fp of stages.values()) kept.add(fp);
  for (const stage of plan.stages) if (stage.decision.action === 'cached') kept.add(stage.fingerprint);
  return (await store.listObjects()).map((fp) => ({
    what: 'object',
    name: shortFingerprint(fp),
    fingerprint: fp,
    dir: store.objectDir(fp),
    ...(kept.has(fp) ? { kept: 'referenced' } : {}),
  }));
}

async function judgeWork(store: ArtifactStore, plan: Plan, options: GcOptions): Promise<Verdict[]> {
  const pipeline = plan.loaded.config.name;
  const unbuilt = new Map(plan.stages.filter((stage) => stage.decision.action !== 'cached').map((stage) => [stage.fingerprint, stage.name]));
  const verdicts: Verdict[] = [];
  for (const name of await store.listWork()) {
    const dir = store.workDir(name);
    if (!isFingerprint(name)) {
      const keep = !(options.clearCache ?? []).includes(name);
      const kept = keep ? `${name} (${await dirBytes(dir)} B; --clear-cache ${name} removes it)` : undefined;
      verdicts.push({ what: 'cache', name, fingerprint: name, dir, ...(kept ? { kept } : {}) });
      continue;
    }
    const step = await latestCheckpointStep(dir);
    const stage = unbuilt.get(name);
    const scratch = await stageScratch(dir);
    let kept: string | undefined;
    if (!options.resumable && stage && (step !== undefined || scratch.length > 0)) {
      const what = step !== undefined ? `step checkpoint at step ${step}` : `its ${scratch.join(', ')}`;
      kept = `${shortFingerprint(name)} (${stage}: the next run resumes from ${what}; --resumable removes it)`;
    } else if (!options.resumable && step !== undefined) {
      kept = `${shortFingerprint(name)} (step checkpoint at step ${step}, not a stage of ${pipeline}; --resumable removes it)`;
    }
    verdicts.push({ what: 'work', name: shortFingerprint(name), fingerprint: name, dir, ...(kept ? { kept } : {}) });
  }
  return verdicts;
}

/**
 * What a stage keeps in its work folder to resume from besides step checkpoints (precompute's and
 * distill's labels so far, a tokenizer): every entry but the runner's own output folders (out-*,
 * named by OUT), which no run resumes from without a checkpoint (executor/run-stage.ts).
 */
async function stageScratch(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir).catch(() => [] as string[]);
  return entries.filter((entry) => entry !== 'OUT' && entry !== 'checkpoints' && !/^out(-|$)/.test(entry));
}
