/**
 * `pipeline gc`: deletes every object no ref (of any pipeline in the store) points at, and every
 * work folder (unfinished builds and their step checkpoints: a later run of that fingerprint starts
 * over). Runs under the store lock, so it never races a run.
 */
import * as fs from 'node:fs/promises';
import { shortFingerprint } from '../fingerprint.ts';
import { acquireStoreLock, describeHolder } from '../store/lock.ts';
import { dirBytes } from '../store/fs-util.ts';
import { EXIT, loadOrThrow, storeFor, type ConfigOptions, type Io } from './common.ts';

export async function gcCommand(configPath: string, options: ConfigOptions & { dryRun?: boolean }, io: Io): Promise<number> {
  const loaded = await loadOrThrow(configPath, options, io);
  const store = storeFor(loaded, options, io);
  const lock = await acquireStoreLock(store.root, {
    wait: true,
    command: `pipeline gc ${configPath}`,
    onWait: (holder) => io.err(`waiting for the store lock held by ${describeHolder(holder)} ...`),
  });
  try {
    const kept = new Set<string>();
    for (const stages of (await store.allRefs()).values()) for (const fp of stages.values()) kept.add(fp);
    const doomed = [
      ...(await store.listObjects()).filter((fp) => !kept.has(fp)).map((fp) => ({ what: 'object', fp, dir: store.objectDir(fp) })),
      ...(await store.listWork()).map((fp) => ({ what: 'work', fp, dir: store.workDir(fp) })),
    ];
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
