/**
 * Deleting from the store so that a kill at any moment leaves either the whole thing or nothing in
 * its place: a folder is first renamed into `<store>/trash/` (one atomic step on the same file
 * system), and only then removed file by file. A kill mid-removal leaves a partial folder in the
 * trash, which is no object and no work folder; the next run, `gc` or `verify --repair` empties the
 * trash under the store lock. (Removing `objects/<fp>` in place left half an object that still had
 * its manifest, which plan then counted as cached.)
 *
 * Published objects are read-only (see `makeReadOnly`), so they are made writable again only here,
 * on their way out.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { faultPoint } from './fault.ts';

export function trashDir(storeRoot: string): string {
  return path.join(storeRoot, 'trash');
}

/** Every folder under `dir` (and `dir`) gets owner write and search back, so its entries can be unlinked or added to. */
export async function makeWritable(dir: string): Promise<void> {
  await chmodTree(dir, (mode, isDir) => (isDir ? mode | 0o700 : mode), 'folders-first');
}

const WRITE_BITS = 0o222;

/**
 * Takes write permission away from every file and folder under `dir` (a published object), so a
 * stage that tries to change its input gets EACCES. Root is not stopped by permissions: the
 * runner also checks each input against its manifest after the stage (run-stage.ts).
 */
export async function makeReadOnly(dir: string): Promise<void> {
  // Folders last: a folder without write permission still lets its files be chmod-ed, but the
  // order keeps the top folder writable until everything under it is done.
  await chmodTree(dir, (mode) => mode & ~WRITE_BITS, 'folders-last');
}

async function chmodTree(dir: string, change: (mode: number, isDir: boolean) => number, order: 'folders-first' | 'folders-last'): Promise<void> {
  const top = await fs.lstat(dir);
  if (!top.isDirectory()) return;
  if (order === 'folders-first') await fs.chmod(dir, change(top.mode, true));
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const child = path.join(dir, entry.name);
    if (entry.isDirectory()) await chmodTree(child, change, order);
    else if (entry.isFile()) await fs.chmod(child, change((await fs.lstat(child)).mode, false));
  }
  if (order === 'folders-last') await fs.chmod(dir, change(top.mode, true));
}

/**
 * Moves `dir` into the store's trash and removes it there. A missing `dir` is fine (nothing to do).
 * `PIPELINE_FAULT=trash:moved` or `trash:half-removed` kills this process at that point (tests).
 */
export async function discard(storeRoot: string, dir: string): Promise<void> {
  const moved = await moveToTrash(storeRoot, dir);
  if (!moved) return;
  faultPoint('trash:moved');
  await removeTrashed(moved);
}

/** Renames `dir` into the trash; the new path, or undefined when `dir` does not exist. */
export async function moveToTrash(storeRoot: string, dir: string): Promise<string | undefined> {
  const trash = trashDir(storeRoot);
  await fs.mkdir(trash, { recursive: true });
  const target = path.join(trash, `${path.basename(dir)}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`);
  try {
    // Renaming a folder to another parent rewrites its `..`, which needs write permission on it.
    await fs.chmod(dir, 0o755);
    await fs.rename(dir, target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  return target;
}

/** Removes a folder moveToTrash moved (`PIPELINE_FAULT=trash:half-removed` kills halfway through). */
export async function removeTrashed(dir: string): Promise<void> {
  await makeWritable(dir);
  if (process.env.PIPELINE_FAULT === 'trash:half-removed') {
    // The kill this hook stands for lands while `rm -r` is halfway through the folder.
    const files = (await fs.readdir(dir, { recursive: true, withFileTypes: true })).filter((entry) => entry.isFile());
    for (const entry of files.slice(0, Math.ceil(files.length / 2))) await fs.rm(path.join(entry.parentPath, entry.name));
    faultPoint('trash:half-removed');
  }
  // Retries: a process a killed run left behind may still be writing into a work folder.
  await fs.rm(dir, { recursive: true, force: true, maxRetries: 5 });
}

/** Removes whatever a killed process left in the trash. Call under the store lock. */
export async function emptyTrash(storeRoot: string): Promise<string[]> {
  const trash = trashDir(storeRoot);
  let entries: string[];
  try {
    entries = await fs.readdir(trash);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const removed: string[] = [];
  for (const entry of entries) {
    try {
      await removeTrashed(path.join(trash, entry));
      removed.push(entry);
    } catch {
      // Still being written by a stray process: it stays for the next time.
    }
  }
  return removed;
}
