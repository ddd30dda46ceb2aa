/**
 * `pipeline gc`: deletes every object no ref (of any pipeline in the store) points at, and the work
 * folders (unfinished builds and their step checkpoints) that the config as it stands would not
 * resume from. The work folder of a stage whose current fingerprint is unbuilt is kept: it holds the
 * step checkpoints of a crashed or stopped training run, and deleting it would make the next
 * `pipeline run` start that training over. `--resumable` deletes those too. Runs under the store
 * lock, so it never races a run.
 */
import * as fs from 'node:fs/promises';
import { shortFingerprint } from '../fingerprint.ts';
import { acquireStoreLock, describeHolder } from '../store/lock.ts';
import { dirBytes, exists } from '../store/fs-util.ts';
import { EXIT, loadOrThrow, planOrThrow, storeFor, type ConfigOptions, type Io } from './common.ts';

export async function gcCommand(configPath: string, options: ConfigOptions & { dryRun?: boolean; resumable?: boolean }, io: Io): Promise<number> {
  const loaded = await loadOrThrow(configPath, options, io);
  const store = storeFor(loaded, options, io);
  // Taking the lock would create the store: a store that is not there has nothing to collect.
  if (!(await exists(store.root))) {
    io.out(`no store at ${store.root}: nothing to collect`);
    return EXIT.ok;
  }
  // The fingerprints this config would build now: a work folder of one of them is what the next run
  // resumes. With --resumable nothing is kept, so there is nothing to plan.
  const unbuilt = options.resumable ? [] : (await planOrThrow(loaded, store, {})).stages.filter((stage) => stage.decision.action !== 'cached');
  const resumable = new Map(unbuilt.map((stage) => [stage.fingerprint, stage.name]));
  const lock = await acquireStoreLock(store.root, {
    wait: true,
    command: `pipeline gc ${configPath}`,
    onWait: (holder) => io.err(`waiting for the store lock held by ${describeHolder(holder)} ...`),
  });
  try {
    const kept = new Set<string>();
    for (const stages of (await store.allRefs()).values()) for (const fp of stages.values()) kept.add(fp);
    const work = await store.listWork();
    const keptWork = work.filter((fp) => resumable.has(fp));
    const doomed = [
      ...(await store.listObjects()).filter((fp) => !kept.has(fp)).map((fp) => ({ what: 'object', fp, dir: store.objectDir(fp) })),
      ...work.filter((fp) => !keptWork.includes(fp)).map((fp) => ({ what: 'work', fp, dir: store.workDir(fp) })),
    ];
    for (const fp of keptWork) io.out(`kept work ${shortFingerprint(fp)} (${resumable.get(fp)}: the next run resumes from it; --resumable removes it)`);
    let bytes = 0;
    for (const item of doomed) {
      const size = await dirBytes(item.dir);
      bytes += size;
      io.out(`${options.dryRun ? 'would remove' : 'removed'} ${item.what} ${shortFingerprint(item.fp)} (${size} B)`);
      if (!options.dryRun) await fs.rm(item.dir, { recursive: true, force: true });
    }
    io.out(`${options.dryRun ? 'would free' : 'freed'} ${bytes} B; kept ${kept.size} referenced objects`);
    return EXIT.ok;
  } finally {
    await lock.release();
  }
}
