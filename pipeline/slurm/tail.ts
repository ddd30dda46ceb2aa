import * as fs from 'node:fs/promises';

/**
 * The last `count` lines of a text file ('' when it does not exist). Reads only the final 64 KiB:
 * a failed job's stderr may be large, and the tail is all a failure message shows. (A few lines of
 * our own: the npm tail readers read line by line from the end, which buys nothing at this size.)
 */
export async function tailLines(file: string, count: number): Promise<string> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw error;
  }
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, 64 * 1024);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    const lines = buffer.toString('utf8').replace(/\s+$/, '').split('\n');
    return lines.slice(-count).join('\n');
  } finally {
    await handle.close();
  }
}
