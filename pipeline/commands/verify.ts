/**
 * `pipeline verify`: the full check of a store (every pipeline's objects, not only the config's):
 * each object's manifest parses and names its folder, and each file is there, of its size, and
 * hashes to its sha256; no file is there that the manifest does not list. It also names refs whose
 * object is gone (the next run rebuilds those) and what interrupted commands left behind (the
 * trash, `.tmp-` files). `--repair` removes damaged objects and the leftovers, so that the next
 * `pipeline run` rebuilds what was damaged. Exit 0 when nothing is damaged (or all was repaired),
 * 1 otherwise. Runs under the store lock, so it never sees a run half way through publishing.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { shortFingerprint } from '../fingerprint.ts';
import { exists } from '../store/fs-util.ts';
import { acquireStoreLock, describeHolder } from '../store/lock.ts';
import { describeProblems } from '../store/object-check.ts';
import { trashDir } from '../store/trash.ts';
import type { ArtifactStore } from '../store/store.ts';
import { EXIT, loadOrThrow, storeFor, type CommandIo, type ConfigOptions } from './common.ts';

export interface VerifyOptions extends ConfigOptions {
  repair?: boolean;
  json?: boolean;
  breakLock?: boolean;
}

export interface VerifyReport {
  store: string;
  objects: number;
  damaged: { fingerprint: string; stage: string | null; problems: string[] }[];
  /** `pipeline/stage` refs whose object is not in the store. */
  danglingRefs: string[];
  /** Paths an interrupted command left: trash entries and `.tmp-` files. */
  leftovers: string[];
  repaired: boolean;
}

export async function verifyCommand(configPath: string, options: VerifyOptions, io: CommandIo): Promise<number> {
  const loaded = await loadOrThrow(configPath, options, io);
  const store = storeFor(loaded, options, io);
  if (!(await exists(store.root))) {
    io.out(`no store at ${store.root}: nothing to verify`);
    return EXIT.ok;
  }
  const lock = await acquireStoreLock(store.root, {
    wait: true,
    breakLock: options.breakLock,
    command: `pipeline verify ${configPath}`,
    onWait: (holder) => io.err(`waiting for the store lock held by ${describeHolder(holder)} ...`),
    onTakeover: (message) => io.err(message),
  });
  try {
    const report = await verifyStore(store, (line) => io.err(line));
    if (options.repair) await repair(store, report);
    if (options.json) {
      io.out(JSON.stringify(report, null, 2));
    } else {
      for (const item of report.damaged) {
        io.out(`${options.repair ? 'removed damaged' : 'DAMAGED'} ${item.fingerprint}${item.stage ? ` (${item.stage})` : ''}: ${describeProblems(item.problems, 5)}`);
      }
      for (const ref of report.danglingRefs) io.out(`ref ${ref}: its artifact is not in the store (the next run rebuilds it)`);
      for (const left of report.leftovers) io.out(`${options.repair ? 'removed' : 'leftover'} ${left} (left by an interrupted command)`);
      const ok = report.objects - report.damaged.length;
      io.out(`${report.objects} objects verified: ${ok} whole, ${report.damaged.length} damaged`);
      if (report.damaged.length > 0) {
        io.out(options.repair ? `run \`pipeline run ${configPath}\` to rebuild what was removed` : `\`pipeline verify ${configPath} --repair\` removes the damaged objects; the next run rebuilds them`);
      }
    }
    return report.damaged.length === 0 || options.repair ? EXIT.ok : EXIT.failed;
  } finally {
    await lock.release();
  }
}

export async function verifyStore(store: ArtifactStore, progress?: (line: string) => void): Promise<VerifyReport> {
  const objects = await store.listObjects();
  const damaged: VerifyReport['damaged'] = [];
  let done = 0;
  for (const fingerprint of objects) {
    const checked = await store.checkObject(fingerprint, 'full');
    if (checked.state === 'damaged') {
      damaged.push({ fingerprint, stage: checked.manifest ? `${checked.manifest.pipeline}/${checked.manifest.stage}` : null, problems: checked.problems });
    }
    done += 1;
    if (progress && done % 50 === 0) progress(`verified ${done}/${objects.length} objects`);
  }
  const danglingRefs: string[] = [];
  for (const [pipeline, stages] of await store.allRefs()) {
    for (const [stage, fingerprint] of stages) {
      if (!objects.includes(fingerprint)) danglingRefs.push(`${pipeline}/${stage} -> ${shortFingerprint(fingerprint)}`);
    }
  }
  return { store: store.root, objects: objects.length, damaged, danglingRefs, leftovers: await leftovers(store), repaired: false };
}

/** The trash's entries and `.tmp-` files under refs/ and runs/ (writeFileAtomic's, from a killed process). */
async function leftovers(store: ArtifactStore): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await fs.readdir(trashDir(store.root)).catch(() => [] as string[])) found.push(path.join(trashDir(store.root), entry));
  for (const top of ['refs', 'runs']) {
    const dir = path.join(store.root, top);
    for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])) {
      if (entry.isFile() && entry.name.includes('.tmp-')) found.push(path.join(entry.parentPath, entry.name));
    }
  }
  return found.sort();
}

async function repair(store: ArtifactStore, report: VerifyReport): Promise<void> {
  for (const item of report.damaged) await store.removeObject(item.fingerprint);
  await store.emptyTrash();
  for (const file of report.leftovers) await fs.rm(file, { force: true });
  report.repaired = true;
}
