/** Read-only commands: `status`, `ls`, `show`. Each prints text, or JSON with `--json`. */
import * as path from 'node:path';
import { shortFingerprint } from '../fingerprint.ts';
import { describeDecision } from '../plan.ts';
import { dirBytes } from '../store/fs-util.ts';
import { describeHolder, readLock, staleReason, type LockInfo } from '../store/lock.ts';
import { describeProblems } from '../store/object-check.ts';
import { readLastRun, type LastRun } from './run.ts';
import { slurmStatusLines } from '../slurm/job-record.ts';
import { EXIT, loadOrThrow, planOrThrow, storeFor, type CommandIo, type ConfigOptions } from './common.ts';

export interface JsonOption {
  json?: boolean;
}

export async function statusCommand(configPath: string, options: ConfigOptions & JsonOption, io: CommandIo): Promise<number> {
  const loaded = await loadOrThrow(configPath, options, io);
  const store = storeFor(loaded, options, io);
  const plan = await planOrThrow(loaded, store, {});
  const lastRun = await readLastRun(store, loaded.config.name);
  const lock = await readLock(store.root);
  const lastByStage = new Map((lastRun?.stages ?? []).map((stage) => [stage.name, stage]));
  const stages = plan.stages.map((stage) => ({
    name: stage.name,
    type: stage.fingerprintInput.type,
    fingerprint: stage.fingerprint,
    ref: stage.previous ?? null,
    upToDate: stage.decision.action === 'cached',
    decision: describeDecision(stage),
    lastRun: lastByStage.get(stage.name) ?? null,
  }));
  if (options.json) {
    const lockJson = lock ? { holder: lock, stale: staleReason(lock) ?? null } : null;
    io.out(JSON.stringify({ pipeline: loaded.config.name, store: store.root, lock: lockJson, lastRun: lastRun ? { started: lastRun.started, finished: lastRun.finished, status: lastRun.status } : null, stages }, null, 2));
    return EXIT.ok;
  }
  io.out(`pipeline ${loaded.config.name}, store ${store.root}`);
  io.out(`last run: ${lastRun ? describeRun(lastRun) : 'none'}`);
  io.out(`lock: ${describeLock(lock)}`);
  for (const stage of stages) {
    const state = stage.upToDate ? 'up to date' : stage.ref ? 'out of date' : 'never built';
    const last = stage.lastRun ? `, last run ${stage.lastRun.state}` : '';
    io.out(`  ${stage.name.padEnd(16)} ${state.padEnd(12)} ${stage.ref ? shortFingerprint(stage.ref) : '-'.padEnd(8)}${last}`);
  }
  for (const line of await slurmStatusLines(store, loaded.config.name)) io.out(line);
  return EXIT.ok;
}

function describeLock(lock: LockInfo | undefined): string {
  if (!lock) return 'free';
  const stale = staleReason(lock);
  return stale ? `stale, left by ${describeHolder(lock)}: ${stale}; the next run takes it over` : `held by ${describeHolder(lock)}`;
}

function describeRun(run: LastRun): string {
  if (run.status === 'running') return `running (pid ${run.pid}), started ${run.started}`;
  if (run.status === 'interrupted') return `interrupted (its process ${run.pid} ended without finishing), started ${run.started}`;
  return `${run.status}, ${run.started} .. ${run.finished}`;
}

export async function lsCommand(configPath: string, options: ConfigOptions & JsonOption, io: CommandIo): Promise<number> {
  const loaded = await loadOrThrow(configPath, options, io);
  const store = storeFor(loaded, options, io);
  const refs = (await store.allRefs()).get(loaded.config.name) ?? new Map<string, string>();
  const rows = [];
  for (const [stage, fingerprint] of refs) {
    const checked = await store.checkObject(fingerprint);
    const manifest = checked.state === 'ok' ? checked.manifest : undefined;
    rows.push({
      stage,
      fingerprint,
      kind: manifest?.kind ?? null,
      created: manifest?.created ?? null,
      files: manifest ? Object.keys(manifest.files).length : 0,
      bytes: manifest ? await dirBytes(store.objectDir(fingerprint)) : 0,
      path: store.objectDir(fingerprint),
      missing: checked.state === 'missing',
      damaged: checked.state === 'damaged' ? checked.problems : null,
    });
  }
  if (options.json) io.out(JSON.stringify(rows, null, 2));
  else if (rows.length === 0) io.out(`no artifacts for ${loaded.config.name} in ${store.root}`);
  else {
    for (const row of rows) {
      const state = row.damaged ? `DAMAGED: ${describeProblems(row.damaged)}` : (row.created ?? 'MISSING');
      io.out(`${row.stage.padEnd(16)} ${shortFingerprint(row.fingerprint)} ${String(row.kind).padEnd(10)} ${String(row.files).padStart(4)} files ${String(row.bytes).padStart(10)} B  ${state}`);
    }
  }
  return EXIT.ok;
}

export async function showCommand(configPath: string, what: string, options: ConfigOptions & JsonOption, io: CommandIo): Promise<number> {
  const loaded = await loadOrThrow(configPath, options, io);
  const store = storeFor(loaded, options, io);
  const fingerprint =
    (await store.readRef(loaded.config.name, what)) ?? (await store.listObjects()).find((fp) => what.length >= 6 && fp.startsWith(what));
  // A damaged object is a StoreError naming its folder and what is wrong (cli.ts prints it).
  const manifest = fingerprint ? await store.readManifest(fingerprint) : undefined;
  if (!fingerprint || !manifest) {
    io.err(`error: no artifact for "${what}" (neither a built stage of ${loaded.config.name} nor a fingerprint prefix in ${store.root})`);
    return EXIT.usage;
  }
  if (options.json) {
    io.out(JSON.stringify({ ...manifest, path: store.objectDir(fingerprint) }, null, 2));
    return EXIT.ok;
  }
  io.out(`${manifest.stage} (${manifest.type} ${manifest.version}, ${manifest.kind}) ${manifest.fingerprint}`);
  io.out(`path: ${store.objectDir(fingerprint)}`);
  io.out(`created: ${manifest.created} in ${manifest.durationS.toFixed(2)}s, seed ${manifest.seed}`);
  io.out(`params: ${JSON.stringify(manifest.params)}`);
  for (const [stage, fp] of Object.entries(manifest.inputs)) io.out(`input: ${stage} ${shortFingerprint(fp)}`);
  for (const [file, sha] of Object.entries(manifest.userFiles)) io.out(`user file: ${file} ${sha.slice(0, 12)}`);
  if (Object.keys(manifest.metrics).length > 0) io.out(`metrics: ${JSON.stringify(manifest.metrics)}`);
  for (const [file, info] of Object.entries(manifest.files)) io.out(`  ${file} (${info.bytes} B)`);
  io.out(`log: ${path.relative(io.cwd, store.logPath(manifest.pipeline, manifest.stage))}`);
  return EXIT.ok;
}
