/** `pipeline report <config> [--out FILE]`: one self-contained HTML file for the pipeline's current state. */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { EXIT, loadOrThrow, storeFor, type CommandIo, type ConfigOptions } from '../commands/common.ts';
import { exists, writeFileAtomic } from '../store/fs-util.ts';
import { collectReport } from './collect.ts';
import { renderReport } from './html.ts';

export interface ReportOptions extends ConfigOptions {
  /** Relative to where the command runs; default `<store>/reports/<pipeline>.html`. */
  out?: string;
}

export async function reportCommand(configPath: string, options: ReportOptions, io: CommandIo): Promise<number> {
  const loaded = await loadOrThrow(configPath, options, io);
  const store = storeFor(loaded, options, io);
  if (!options.out && !(await exists(store.root))) {
    io.err(`error: no store at ${store.root}: nothing has run yet (run the pipeline first, or name a store with --store, or the report file with --out)`);
    return EXIT.failed;
  }
  const data = await collectReport(loaded, store);
  const { html, charts } = await renderReport(data, new Date());
  const out = options.out ? path.resolve(io.cwd, options.out) : path.join(store.root, 'reports', `${loaded.config.name}.html`);
  await fs.mkdir(path.dirname(out), { recursive: true });
  await writeFileAtomic(out, html);
  for (const problem of data.problems) io.err(`warning: ${problem}`);
  const built = data.stages.filter((s) => s.manifest).length;
  io.out(`report: ${out} (${data.stages.length} stages, ${built} built, ${charts} charts, ${(html.length / 1024).toFixed(0)} KiB)`);
  return EXIT.ok;
}
