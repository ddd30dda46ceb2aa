/**
 * The store lock: one `pipeline run` (or `gc`) at a time per store.
 *
 * Hand-written rather than `proper-lockfile` because that library decides staleness by mtime
 * (at least 5 s after a crash, refreshed by a timer), while a run killed with SIGKILL should free
 * the store at once: the lock file names its holder's host and pid, and a holder on this host
 * whose pid is gone is stale. Across hosts (a Slurm node) the token is what counts: a child job
 * given the holder's token (`run-stage --lock-token`) works under its parent's lock.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LockInfo {
  token: string;
  pid: number;
  host: string;
  command: string;
  started: string;
}

export interface StoreLock {
  token: string;
  /** True when this process works under someone else's lock (a child job with its parent's token). */
  borrowed: boolean;
  release(): Promise<void>;
}

/** The lock is busy and the caller asked not to wait: an expected failure, shown without a stack. */
export class LockBusyError extends Error {
  constructor(readonly holder: LockInfo | undefined, lockFile: string) {
    super(`the store is locked by ${describeHolder(holder)} (${lockFile}); rerun without --no-wait to wait for it`);
  }
}

export function lockFile(storeRoot: string): string {
  return path.join(storeRoot, 'lock');
}

export function describeHolder(holder: LockInfo | undefined): string {
  if (!holder) return 'another process';
  return `pid ${holder.pid} on ${holder.host} (${holder.command}, since ${holder.started})`;
}

export async function readLock(storeRoot: string): Promise<LockInfo | undefined> {
  return readLockFile(lockFile(storeRoot));
}

async function readLockFile(file: string): Promise<LockInfo | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as LockInfo;
  } catch {
    // Missing (just released): "no holder known". Files are created whole (createWhole), never half-written.
    return undefined;
  }
}

/**
 * Creates `file` holding `text` unless it exists, atomically: the text goes to a temp file that is
 * then hard-linked as `file` (link fails if `file` exists), so nobody ever reads a half-written
 * file, even one left by a process killed while creating it.
 */
async function createWhole(file: string, text: string, token: string): Promise<boolean> {
  const tmp = `${file}.new-${token}`;
  await fs.writeFile(tmp, text);
  try {
    await fs.link(tmp, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await fs.rm(tmp, { force: true });
  }
}

/**
 * Removes the lock file `file` if it still names `stale`, a holder that is gone. Of all the waiters
 * that saw it stale, only the one that creates `<file>.takeover-<stale token>` may remove it, and it
 * reads the file again first. (Checking and removing in two steps without that let a slow waiter
 * remove the lock that a faster one had just taken: two holders.) Nobody else removes a lock that
 * names `stale` (its holder is dead), and the marker goes only after that lock is gone, so the
 * file cannot change between the re-read and the removal. A marker whose creator died mid-takeover
 * is itself stale and is removed the same way, one level down.
 */
async function removeStale(file: string, stale: LockInfo, me: LockInfo): Promise<void> {
  const marker = `${file}.takeover-${stale.token}`;
  if (!(await createWhole(marker, JSON.stringify(me), me.token))) {
    const other = await readLockFile(marker);
    if (other && isStale(other)) await removeStale(marker, other, me);
    return; // another waiter is taking over (or we just cleared its dead marker): try again
  }
  try {
    if ((await readLockFile(file))?.token === stale.token) await fs.rm(file, { force: true });
  } finally {
    await fs.rm(marker, { force: true });
  }
}

/** The holder's process is gone (known only for holders on this host). */
export function isStale(holder: LockInfo): boolean {
  if (holder.host !== os.hostname()) return false;
  try {
    process.kill(holder.pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export interface AcquireOptions {
  wait: boolean;
  command: string;
  /** A token handed down by the process that holds the lock (see executor/types.ts). */
  token?: string;
  /** Called once when the lock is busy and we start waiting. */
  onWait?(holder: LockInfo | undefined): void;
  signal?: AbortSignal;
  pollMs?: number;
}

export async function acquireStoreLock(storeRoot: string, options: AcquireOptions): Promise<StoreLock> {
  const file = lockFile(storeRoot);
  await fs.mkdir(storeRoot, { recursive: true });
  if (options.token) {
    const holder = await readLock(storeRoot);
    if (holder?.token === options.token) return { token: options.token, borrowed: true, release: async () => {} };
  }
  const info: LockInfo = {
    token: randomBytes(12).toString('hex'),
    pid: process.pid,
    host: os.hostname(),
    command: options.command,
    started: new Date().toISOString(),
  };
  let warned = false;
  for (;;) {
    options.signal?.throwIfAborted();
    if (await createWhole(file, JSON.stringify(info), info.token)) break;
    const holder = await readLock(storeRoot);
    if (holder && isStale(holder)) {
      await removeStale(file, holder, info);
      continue;
    }
    if (!options.wait) throw new LockBusyError(holder, file);
    if (!warned) {
      options.onWait?.(holder);
      warned = true;
    }
    await sleep(options.pollMs ?? 200);
  }
  const releaseSync = () => {
    try {
      if ((JSON.parse(readFileSync(file, 'utf8')) as LockInfo).token === info.token) unlinkSync(file);
    } catch {
      // Already gone.
    }
  };
  process.once('exit', releaseSync);
  return {
    token: info.token,
    borrowed: false,
    release: async () => {
      process.removeListener('exit', releaseSync);
      const holder = await readLock(storeRoot);
      if (holder?.token === info.token) await fs.rm(file, { force: true });
    },
  };
}
