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
import { unlinkSync } from 'node:fs';
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
  try {
    return JSON.parse(await fs.readFile(lockFile(storeRoot), 'utf8')) as LockInfo;
  } catch {
    // Missing, or caught between the holder's create and write: both read as "no holder known".
    return undefined;
  }
}

function isStale(holder: LockInfo): boolean {
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
    try {
      await fs.writeFile(file, JSON.stringify(info), { flag: 'wx' });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = await readLock(storeRoot);
    if (holder && isStale(holder)) {
      // Move it aside before deleting: of two waiters that both saw it stale, only one rename wins.
      const aside = `${file}.stale-${info.token}`;
      try {
        await fs.rename(file, aside);
        await fs.rm(aside, { force: true });
      } catch {
        // Another waiter got there first; just try again.
      }
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
      unlinkSync(file);
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
