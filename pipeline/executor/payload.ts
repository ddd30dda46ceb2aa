/**
 * What a stage wrote to its output folder, made publishable: symbolic links replaced by copies of
 * what they point at (a link into $PIPELINE_WORK would dangle once the work folder is removed, and
 * a link is not hashed), anything else that is not a file or folder refused, and every file listed
 * with its sha256, size and time for the manifest.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Manifest } from '../stage-api.ts';
import { listFiles, sha256File } from '../store/fs-util.ts';
import { MANIFEST } from '../store/object-check.ts';

/** The output holds something that cannot be published: names it. */
export class PayloadError extends Error {}

/** Replaces each symbolic link under `outDir` by a copy of its target (a file or a folder). */
export async function resolveLinks(outDir: string): Promise<void> {
  for (const entry of await fs.readdir(outDir, { recursive: true, withFileTypes: true })) {
    const absolute = path.join(entry.parentPath, entry.name);
    const relative = path.relative(outDir, absolute);
    if (entry.isSymbolicLink()) {
      const target = await fs.readlink(absolute);
      let stat;
      try {
        stat = await fs.stat(absolute);
      } catch {
        throw new PayloadError(`the output holds a symbolic link that points nowhere: ${relative} -> ${target} (write the file itself into the output folder)`);
      }
      const resolved = await fs.realpath(absolute);
      if (stat.isDirectory() && (resolved === outDir || resolved.startsWith(`${outDir}${path.sep}`) || outDir.startsWith(`${resolved}${path.sep}`))) {
        throw new PayloadError(`the output holds a symbolic link to a folder inside it or around it: ${relative} -> ${target}`);
      }
      await fs.rm(absolute);
      // `dereference` copies what links inside a linked folder point at too.
      await fs.cp(resolved, absolute, { recursive: true, dereference: true });
      // The copy may hold links of its own only if cp kept them; the recursive listing above did not see
      // inside it, so resolve again from the top until none is left.
      return resolveLinks(outDir);
    }
    if (!entry.isFile() && !entry.isDirectory()) {
      throw new PayloadError(`the output holds ${relative}, which is neither a file nor a folder (a socket, pipe or device): only files are published`);
    }
  }
}

export async function payloadFiles(outDir: string): Promise<Manifest['files']> {
  await resolveLinks(outDir);
  const files: Manifest['files'] = {};
  for (const file of await listFiles(outDir)) {
    // A top-level manifest.json is the store's own file, written over at publishing: a command that
    // copies an input folder whole (`cp -r "$PIPELINE_INPUT_SFT"/. "$PIPELINE_OUT"`) brings the
    // input's along, and listing it would make the object name a file that publishing replaced.
    if (file === MANIFEST) continue;
    const absolute = path.join(outDir, file);
    const stat = await fs.stat(absolute);
    files[file] = { sha256: await sha256File(absolute), bytes: stat.size, mtimeMs: stat.mtimeMs };
  }
  return files;
}
