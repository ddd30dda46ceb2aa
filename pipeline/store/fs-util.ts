/** Small file helpers the store and the stage runner share. */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

/** A full disk (ENOSPC, EDQUOT) while writing a file: an expected failure, one line naming the file and the bytes. */
export class DiskFullError extends Error {
  constructor(readonly file: string, readonly bytes: number, free: number | undefined) {
    super(`no space left on the device of ${file}: writing it needs ${bytes} B${free === undefined ? '' : `, ${free} B are free`}`);
  }
}

function isDiskFull(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** Bytes free to this user on the file system holding `file` (undefined when it cannot be told). */
export async function freeBytes(file: string): Promise<number | undefined> {
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    try {
      const stats = await fs.statfs(dir);
      return stats.bavail * stats.bsize;
    } catch {
      if (dir === path.dirname(dir)) return undefined;
    }
  }
}

/** `error` as a DiskFullError naming `file` when it is one; otherwise `error` itself. */
export async function explainDiskFull(error: unknown, file: string, bytes: number): Promise<unknown> {
  return isDiskFull(error) ? new DiskFullError(file, bytes, await freeBytes(file)) : error;
}

/**
 * Writes `text` to a sibling temp file and renames it over `file`: readers never see half a file.
 * A write that fails (a full disk) removes its temp file, so none is left beside `file`.
 */
export async function writeFileAtomic(file: string, text: string): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await fs.writeFile(tmp, text);
    await fs.rename(tmp, file);
  } catch (error) {
    await fs.rm(tmp, { force: true });
    throw await explainDiskFull(error, file, Buffer.byteLength(text));
  }
}

/** A JSON file the store wrote that does not parse (cut by a full disk, edited by hand): names the file. */
export class BrokenJsonError extends Error {
  constructor(readonly file: string, cause: Error) {
    super(`${file} is not valid JSON (${cause.message})`);
  }
}

/** The parsed file, or undefined when it does not exist; a BrokenJsonError naming it when it does not parse. */
export async function readJson<T>(file: string): Promise<T | undefined> {
  const text = await readText(file);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new BrokenJsonError(file, error as Error);
  }
}

/** The file's text, or undefined when it does not exist. */
export async function readText(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

export async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

/** sha256 of a file, streamed so large checkpoints do not sit in memory. */
export function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(file)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/** Every regular file under `dir`, as paths relative to it with `/` separators, sorted. */
export async function listFiles(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'))
    .sort();
}

export async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const file of await listFiles(dir)) total += (await fs.stat(path.join(dir, file))).size;
  return total;
}
