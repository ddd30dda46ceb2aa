/**
 * The store lock: one `pipeline run` (or `gc`) at a time per store.
 *
 * Hand-written rather than `proper-lockfile` because that library decides staleness by mtime
 * (at least 5 s after a crash, refreshed by a timer), while a run killed with SIGKILL should free
 * the store at once: the lock file names its holder's host, pid and the process's start time, and a
 * holder on this host whose pid is gone, or is now another process (the pid was reused: a
 * different start time), is stale. A holder on another host (a container that is gone, a login
 * node) cannot be asked: its lock is stale once it has not been refreshed for LOCK_STALE_MS (a
 * holder touches its lock file every LOCK_REFRESH_MS). `--break-lock` removes any lock.
 * Across hosts (a Slurm node) the token is what counts: a child job given the holder's token
 * (`run-stage --lock-token`) works under its parent's lock.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, unlinkSync, utimesSync } from 'node:fs';
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
  /** The holder process's start (boot id and start tick, Linux); absent where it cannot be read. */
  processStart?: string;
  /** Not in the file: how long ago the lock file was last refreshed, when read. */
  ageMs?: number;
}

/** How often a holder touches its lock file, so a holder on another host can tell it is alive. */
export const LOCK_REFRESH_MS = 30_000;

/** A lock from another host not refreshed for this long is taken over (PIPELINE_LOCK_STALE_S overrides it). */
export function lockStaleMs(): number {
  const seconds = Number(process.env.PIPELINE_LOCK_STALE_S);
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 300_000;
}

/**
 * A token that differs between two processes that had the same pid: the boot's id and the start
 * time in clock ticks since boot (field 22 of /proc/<pid>/stat). Undefined off Linux or when gone.
 */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: count fields after it.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return `${boot}:${fields[19]}`;
  } catch {
    return undefined;
  }
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
  const remote =
    holder.host === os.hostname() ? '' : `; another host: taken over when not refreshed for ${lockStaleMs() / 1000} s, or with --break-lock`;
  return `pid ${holder.pid} on ${holder.host} (${holder.command}, since ${holder.started}${remote})`;
}

export async function readLock(storeRoot: string): Promise<LockInfo | undefined> {
  return readLockFile(lockFile(storeRoot));
}

async function readLockFile(file: string): Promise<LockInfo | undefined> {
  try {
    const [text, stat] = await Promise.all([fs.readFile(file, 'utf8'), fs.stat(file)]);
    return { ...(JSON.parse(text) as LockInfo), ageMs: Date.now() - stat.mtimeMs };
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

/** Why the holder is gone, or undefined while it may be alive (see the top of this file). */
export function staleReason(holder: LockInfo): string | undefined {
  if (holder.host !== os.hostname()) {
    const age = holder.ageMs ?? 0;
    return age > lockStaleMs() ? `its host ${holder.host} has not refreshed it for ${Math.round(age / 1000)} s` : undefined;
  }
  try {
    process.kill(holder.pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH' ? `its process ${holder.pid} is gone` : undefined;
  }
  const now = processStart(holder.pid);
  if (holder.processStart && now && now !== holder.processStart) return `pid ${holder.pid} is now another process (its start time differs from the lock's)`;
  return undefined;
}

export function isStale(holder: LockInfo): boolean {
  return staleReason(holder) !== undefined;
}

export interface AcquireOptions {
  wait: boolean;
  command: string;
  /** A token handed down by the process that holds the lock (see executor/types.ts). */
  token?: string;
  /** Called once when the lock is busy and we start waiting. */
  onWait?(holder: LockInfo | undefined): void;
  /** Called when a stale lock is taken over, or broken with `breakLock`, with a line saying whose and why. */
  onTakeover?(message: string): void;
  /** Remove the lock whoever holds it (`--break-lock`): for a holder known to be dead that looks alive. */
  breakLock?: boolean;
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
  const start = processStart(process.pid);
  const info: LockInfo = {
    token: randomBytes(12).toString('hex'),
    pid: process.pid,
    host: os.hostname(),
    command: options.command,
    started: new Date().toISOString(),
    ...(start ? { processStart: start } : {}),
  };
  let warned = false;
  let breakLock = options.breakLock === true;
  for (;;) {
    options.signal?.throwIfAborted();
    if (await createWhole(file, JSON.stringify(info), info.token)) break;
    const holder = await readLock(storeRoot);
    const stale = holder && (breakLock ? 'broken with --break-lock' : staleReason(holder));
    if (holder && stale) {
      options.onTakeover?.(`taking over the store lock of ${describeHolder(holder)}: ${stale}`);
      breakLock = false;
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
  // Touching the file tells a waiter on another host that this holder is alive (see staleReason).
  const refresh = setInterval(() => {
    try {
      if ((JSON.parse(readFileSync(file, 'utf8')) as LockInfo).token === info.token) utimesSync(file, new Date(), new Date());
    } catch {
      // Gone: released, or broken by someone else.
    }
  }, LOCK_REFRESH_MS).unref();
  return {
    token: info.token,
    borrowed: false,
    release: async () => {
      clearInterval(refresh);
      process.removeListener('exit', releaseSync);
      const holder = await readLock(storeRoot);
      if (holder?.token === info.token) await fs.rm(file, { force: true });
    },
  };
}
