/**
 * JSON Lines readers and writers for every artifact. Reading streams line by line and a
 * bad line is an error naming the file and line number; writing streams too, so a large dataset
 * never has to exist as one string.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { finished } from 'node:stream/promises';

/** Calls `onRecord` for each non-empty line, in order; `line` is 1-based. */
export async function forEachJsonl<T>(file: string, onRecord: (record: T, line: number) => void): Promise<number> {
  const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
  let line = 0;
  let count = 0;
  for await (const text of lines) {
    line++;
    if (text.trim() === '') continue;
    let record: T;
    try {
      record = JSON.parse(text) as T;
    } catch (error) {
      lines.close();
      throw new Error(`${file}:${line}: invalid JSON: ${(error as Error).message}`);
    }
    onRecord(record, line);
    count++;
  }
  return count;
}

export async function readJsonl<T>(file: string): Promise<T[]> {
  const records: T[] = [];
  await forEachJsonl<T>(file, (record) => records.push(record));
  return records;
}

export async function writeJsonl(file: string, records: Iterable<unknown>): Promise<number> {
  const out = createWriteStream(file, 'utf8');
  let count = 0;
  for (const record of records) {
    if (!out.write(`${JSON.stringify(record)}\n`)) await once(out, 'drain');
    count++;
  }
  out.end();
  await finished(out);
  return count;
}

/** Reads a JSONL file of records, each checked by `problemOf`; a bad one is an error naming file, line and key. */
export async function readChecked<T>(file: string, problemOf: (record: T) => string | undefined): Promise<T[]> {
  const records: T[] = [];
  await forEachJsonl<T>(file, (record, line) => {
    const problem = problemOf(record);
    if (problem) throw new Error(`${file}:${line}: ${problem}`);
    records.push(record);
  });
  return records;
}
