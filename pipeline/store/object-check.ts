/**
 * Is `objects/<fp>` a whole, unchanged artifact? Two depths:
 * - cheap (every use: plan, run, status, show, ls, each input before and after a stage): the
 *   manifest parses, names this fingerprint, and the folder holds exactly its files, each of the
 *   recorded size and modification time. A file whose time alone differs (a store copied without
 *   keeping times) is re-hashed rather than called damaged.
 * - full (`pipeline verify`): every file re-hashed against its sha256.
 * A folder without a valid manifest is never an object: what a killed delete or publish left.
 * (Manifests written before times were recorded are checked by size alone at the cheap depth.)
 */
import { statSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import type { Manifest } from '../stage-api.ts';
import { BrokenJsonError, readJson, sha256File } from './fs-util.ts';

export const MANIFEST = 'manifest.json';

/** The parts of a manifest the store relies on; the rest is the stage's record and passes through. */
const manifestShape = z.looseObject({
  fingerprint: z.string(),
  pipeline: z.string(),
  stage: z.string(),
  kind: z.string(),
  files: z.record(z.string(), z.looseObject({ sha256: z.string().regex(/^[0-9a-f]{64}$/), bytes: z.number().int().nonnegative(), mtimeMs: z.number().optional() })),
});

export type ObjectCheck =
  | { state: 'ok'; manifest: Manifest }
  | { state: 'missing' }
  /** `manifest` when it parsed (the files are what is wrong). */
  | { state: 'damaged'; problems: string[]; manifest?: Manifest };

/** The first few problems in one line, for messages. */
export function describeProblems(problems: readonly string[], shown = 3): string {
  const more = problems.length - shown;
  return `${problems.slice(0, shown).join('; ')}${more > 0 ? `; and ${more} more` : ''}`;
}

export async function checkObject(dir: string, fingerprint: string, depth: 'cheap' | 'full' = 'cheap'): Promise<ObjectCheck> {
  let top;
  try {
    top = await fs.lstat(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'missing' };
    throw error;
  }
  if (!top.isDirectory()) return { state: 'damaged', problems: [`${dir} is not a folder`] };
  const manifestFile = path.join(dir, MANIFEST);
  let raw: unknown;
  try {
    raw = await readJson<unknown>(manifestFile);
  } catch (error) {
    if (error instanceof BrokenJsonError) return { state: 'damaged', problems: [error.message] };
    throw error;
  }
  if (raw === undefined) return { state: 'damaged', problems: [`${manifestFile} is missing (left by an interrupted delete or publish)`] };
  const parsed = manifestShape.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { state: 'damaged', problems: [`${manifestFile} is not a manifest: ${issue?.path.join('.') || '(top)'}: ${issue?.message}`] };
  }
  const manifest = raw as Manifest;
  if (manifest.fingerprint !== fingerprint) {
    return { state: 'damaged', problems: [`${manifestFile} names fingerprint ${manifest.fingerprint}, not its folder's ${fingerprint}`] };
  }
  const problems = await checkFiles(dir, manifest, depth);
  return problems.length === 0 ? { state: 'ok', manifest } : { state: 'damaged', problems, manifest };
}

async function checkFiles(dir: string, manifest: Manifest, depth: 'cheap' | 'full'): Promise<string[]> {
  const problems: string[] = [];
  const found = new Map<string, 'file' | 'other'>();
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isDirectory()) continue;
    // String slicing: path.relative per entry was a third of the check's time on 3,000 files.
    const folder = entry.parentPath.length > dir.length ? `${entry.parentPath.slice(dir.length + 1).split(path.sep).join('/')}/` : '';
    const relative = `${folder}${entry.name}`;
    if (relative !== MANIFEST) found.set(relative, entry.isFile() ? 'file' : 'other');
  }
  for (const [file, expected] of Object.entries(manifest.files)) {
    // A stage that copied its input folder wrote a manifest.json the store's own replaced; manifests
    // written before publishing left it out still list it.
    if (file === MANIFEST) continue;
    const kind = found.get(file);
    found.delete(file);
    if (kind === undefined) {
      problems.push(`${file} is missing`);
      continue;
    }
    if (kind === 'other') {
      problems.push(`${file} is not a regular file`);
      continue;
    }
    const absolute = path.join(dir, file);
    // Synchronous: a stat is microseconds, while an awaited one waits its turn in libuv's thread
    // pool (3,000 files took 1.5 s that way on a loaded machine; bench/store-check.ts).
    const stat = statSync(absolute);
    if (stat.size !== expected.bytes) problems.push(`${file} has ${stat.size} B, its manifest says ${expected.bytes} B`);
    else if ((depth === 'full' || timeChanged(stat.mtimeMs, expected.mtimeMs)) && (await sha256File(absolute)) !== expected.sha256) {
      problems.push(`${file} does not match its sha256 in the manifest`);
    }
  }
  for (const extra of found.keys()) problems.push(`${extra} is not in the manifest (written after publishing)`);
  return problems;
}

/**
 * The file's time differs from the one recorded at publishing. Within 10 µs counts as the same: a
 * time put back through utimes (seconds as a double) comes back a few hundred ns off, while a
 * write after publishing lands far later than that.
 */
function timeChanged(now: number, recorded: number | undefined): boolean {
  return recorded !== undefined && Math.abs(now - recorded) > 0.01;
}
