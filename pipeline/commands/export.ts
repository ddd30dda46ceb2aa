/**
 * `pipeline export <config> <stage>`: the stage's current checkpoint artifact as a folder that ONNX
 * Runtime and `@huggingface/transformers` load: the checkpoint's files plus `onnx/model.onnx`.
 * Artifacts in the store are immutable (their manifest lists every file's hash), so the export goes
 * to its own folder, written aside and renamed into place: never a partial folder.
 */
import { cp, mkdir, rename, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { shortFingerprint } from '../fingerprint.ts';
import { makeWritable } from '../store/trash.ts';
import { MANIFEST } from '../store/store.ts';
import { EXIT, loadOrThrow, storeFor, type ConfigOptions, type Io } from './common.ts';

export interface ExportOptions extends ConfigOptions {
  out?: string;
}

export async function exportCommand(configPath: string, stage: string, options: ExportOptions, io: Io): Promise<number> {
  const loaded = await loadOrThrow(configPath, options, io);
  const store = storeFor(loaded, options, io);
  if (!loaded.stages.has(stage)) {
    io.err(`error: ${configPath} has no stage "${stage}" (stages: ${[...loaded.stages.keys()].join(', ')})`);
    return EXIT.usage;
  }
  const fingerprint = await store.readRef(loaded.config.name, stage);
  const manifest = fingerprint ? await store.readManifest(fingerprint) : undefined;
  if (!fingerprint || !manifest) {
    io.err(`error: ${stage} has no artifact in ${store.root}: run \`pipeline run ${configPath} --until ${stage}\` first`);
    return EXIT.usage;
  }
  if (manifest.kind !== 'checkpoint') {
    io.err(`error: ${stage} produces ${manifest.kind}, not a checkpoint: only model checkpoints export to ONNX`);
    return EXIT.usage;
  }
  const source = store.objectDir(fingerprint);
  const out = options.out ? path.resolve(io.cwd, options.out) : path.join(store.root, 'exports', loaded.config.name, stage);
  const staging = `${out}.partial-${process.pid}`;
  const started = performance.now();
  const engine = await import('../../stages/lib/engine/index.ts');
  const onnx = await import('../../stages/lib/engine/onnx/index.ts');
  await engine.initEngine(loaded.config.engine);
  await rm(staging, { recursive: true, force: true });
  await mkdir(path.dirname(out), { recursive: true });
  try {
    await cp(source, staging, { recursive: true, filter: (file) => path.basename(file) !== MANIFEST });
    // The copy keeps the published object's read-only folders: the export writes onnx/ into it.
    await makeWritable(staging);
    const modelPath = onnx.exportCheckpoint(staging);
    await rm(out, { recursive: true, force: true });
    await rename(staging, out);
    io.out(`${stage} (${shortFingerprint(fingerprint)}) -> ${path.join(out, path.relative(staging, modelPath))} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    return EXIT.ok;
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}
