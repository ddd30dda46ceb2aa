/** A JSON file as every manifest and metrics file is written: two-space indented, ending in a newline. */
import { promises as fs } from 'node:fs';

export async function writeJson(file: string, value: unknown): Promise<void> {
  await fs.writeFile(file, `${JSON.stringify(value, null, 2)}\n`);
}
