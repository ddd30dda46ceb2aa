/**
 * `configs/chorus.yaml` on a 10k-pair catalog, with only `data.with` swapped: the target is
 * the whole run in at most 45 minutes on 2 cores. The catalog is the built-in world generator's
 * (1,250 queries x 8 graded candidates, English titles and descriptions, grades L1-L4 as 0-3),
 * written as a CSV the import stage reads like any user's file.
 *
 *   npm run bench:10k                                  # build the catalog, run, print the times
 *   npx tsx bench/catalog-10k.ts --pairs 2000          # a smaller catalog (queries = pairs / 8)
 *   npx tsx bench/catalog-10k.ts --catalog-only        # write the CSV and config, print their paths
 *   npx tsx bench/catalog-10k.ts --store /tmp/s -- --until sft   # keep the store; extra run arguments
 *
 * Prints one JSON object: pairs, wall_s, target_s (2,700) and the ratio to it, each stage's duration
 * and share of the run from its manifest, each stage's CPU seconds (stage_cpu_s: the run's process
 * sampled from /proc every half second while that stage ran; cpu_s their sum, so cpu_s / wall_s
 * near 2 is both cores busy; cpu_s_over_2_cores the wall time that work would take on 2 idle cores), the eval stage's dev figures, and the load average before
 * and after (on a shared machine the figures are slower, not wrong). The pipeline's own progress,
 * then a table of the same per-stage figures, go to stderr.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse, stringify } from 'yaml';
import { Rng } from '../pipeline/rng.ts';
import { buildKnowledgeGraph } from '../stages/lib/relevance/kg.ts';
import { loadKnowledge } from '../stages/lib/relevance/knowledge.ts';
import { generateWorld, worldParamsSchema } from '../stages/lib/relevance/world.ts';

const TARGET_S = 45 * 60;
const CANDIDATES = 8;
const repo = path.resolve(import.meta.dirname, '..');
const argv = process.argv.slice(2);
const dashes = argv.indexOf('--');
const own = dashes >= 0 ? argv.slice(0, dashes) : argv;
const runArgs = dashes >= 0 ? argv.slice(dashes + 1) : [];
const option = (name: string) => {
  const i = own.indexOf(name);
  return i >= 0 ? own[i + 1] : undefined;
};
const pairs = Number(option('--pairs') ?? 10_000);
const loadAverage = () => Number((os.loadavg()[0] ?? 0).toFixed(2));
const loadBefore = loadAverage();

/** The world's examples of every split as a CSV of query, title, description and a 0-3 label. */
function writeCatalog(file: string): number {
  const kg = buildKnowledgeGraph(loadKnowledge());
  const params = worldParamsSchema.parse({ queries: Math.ceil(pairs / CANDIDATES), candidates: CANDIDATES, itemsPerType: 12 });
  const world = generateWorld(kg, params, new Rng(13, 'bench/catalog-10k'));
  const examples = [...world.splits.train, ...world.splits.dev, ...world.splits.test];
  const quote = (text: string) => `"${text.replaceAll('"', '""')}"`;
  const rows = examples.map((e) => [quote(e.query), quote(e.item.title), quote(e.item.description ?? ''), String(Number(e.label.slice(1)) - 1)].join(','));
  fs.writeFileSync(file, `query,title,description,rating\n${rows.join('\n')}\n`);
  return examples.length;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-catalog-10k-'));
const csv = path.join(dir, 'catalog.csv');
const written = writeCatalog(csv);
// configs/chorus.yaml with only data.with swapped; the store is the bench's own.
const config = parse(fs.readFileSync(path.join(repo, 'configs', 'chorus.yaml'), 'utf8')) as { stages: { data: { with: unknown } } };
config.stages.data.with = { path: csv, columns: { query: 'query', title: 'title', description: 'description', label: 'rating' }, labels: { scale: 'rating0to3' }, name: 'catalog-10k' };
const configFile = path.join(dir, 'chorus-10k.yaml');
fs.writeFileSync(configFile, stringify(config));
if (own.includes('--catalog-only')) {
  console.log(JSON.stringify({ pairs: written, csv, config: configFile }));
  process.exit(0);
}

const store = option('--store') ?? path.join(dir, 'store');

/**
 * CPU seconds (user + system, every thread, and children waited for) of a live process, from
 * /proc/<pid>/stat; undefined where there is no /proc (the bench then prints wall times only).
 */
function processCpuS(pid: number): number | undefined {
  try {
    // Fields after the command's closing parenthesis: utime, stime, cutime, cstime are the 12th-15th.
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i] ?? 0), 0);
    return ticks / CLOCK_TICKS_PER_S;
  } catch {
    return undefined;
  }
}
// Linux's USER_HZ, what /proc/<pid>/stat counts in (getconf CLK_TCK: 100 on every mainstream build).
const CLOCK_TICKS_PER_S = 100;

// Stages run one at a time (--concurrency 1), so the CPU the process spends while a stage runs is
// that stage's: the run's stages form a chain apart from kg/icl, and SFT runs, sample, DPO, GRPO
// and eval take the train queue one at a time anyway, so this costs the run little wall time.
const started = performance.now();
const child = spawn(process.execPath, [path.join(repo, 'bin', 'pipeline.js'), 'run', configFile, '--store', store, '--concurrency', '1', ...runArgs], {
  cwd: repo,
  env: { ...process.env, CI: 'true' },
  stdio: ['ignore', 'inherit', 'pipe'],
});
const cpuByStage: Record<string, number> = {};
let running: string | undefined;
let lastCpu = 0;
const sampleCpu = () => {
  const now = child.pid === undefined ? undefined : processCpuS(child.pid);
  if (now === undefined) return;
  cpuByStage[running ?? '(orchestrator)'] = (cpuByStage[running ?? '(orchestrator)'] ?? 0) + (now - lastCpu);
  lastCpu = now;
};
const poll = setInterval(sampleCpu, 500);
let pending = '';
child.stderr?.on('data', (chunk: Buffer) => {
  process.stderr.write(chunk);
  pending += chunk.toString('utf8');
  const lines = pending.split('\n');
  pending = lines.pop() ?? '';
  for (const line of lines) {
    const event = /(?:^|\s)([\w.-]+): (started|succeeded|failed)\b/.exec(line);
    if (!event) continue;
    // Charge what was spent so far to the stage that spent it, before the running stage changes.
    sampleCpu();
    running = event[2] === 'started' ? event[1] : undefined;
  }
});
const exitCode = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
clearInterval(poll);
const wallS = (performance.now() - started) / 1000;
const objects = path.join(store, 'objects');
const manifests = fs.existsSync(objects)
  ? fs.readdirSync(objects).flatMap((d) => {
      const file = path.join(objects, d, 'manifest.json');
      return fs.existsSync(file) ? [JSON.parse(fs.readFileSync(file, 'utf8')) as { stage: string; fingerprint: string; created: string; durationS?: number }] : [];
    })
  : [];
// In the order the stages finished (a manifest's created time).
manifests.sort((a, b) => a.created.localeCompare(b.created));
const durations = Object.fromEntries(manifests.map((m) => [m.stage, Number((m.durationS ?? 0).toFixed(1))]));
const stageTotal = Object.values(durations).reduce((a, b) => a + b, 0);
const cpu = Object.fromEntries(Object.entries(cpuByStage).map(([stage, s]) => [stage, Number(s.toFixed(1))]));
const cpuTotal = Object.values(cpuByStage).reduce((a, b) => a + b, 0);
// A table for the eye on stderr (stdout stays one JSON object): each stage's wall and CPU seconds,
// then the run's wall time against the 45-minute target.
const row = (name: string, wall: string, cpuS: string, share: string) => `${name.padEnd(16)}${wall.padStart(9)}${cpuS.padStart(9)}${share.padStart(8)}`;
process.stderr.write(
  [
    row('stage', 'wall s', 'CPU s', 'share'),
    ...Object.entries(durations).map(([stage, d]) => row(stage, d.toFixed(1), cpu[stage]?.toFixed(1) ?? '-', `${((100 * d) / (stageTotal || 1)).toFixed(0)} %`)),
    row('run', wallS.toFixed(1), cpuTotal.toFixed(1), ''),
    `${(wallS / 60).toFixed(1)} min against the ${TARGET_S / 60}-minute target (${((100 * wallS) / TARGET_S).toFixed(0)} %); load average ${loadBefore} before, ${loadAverage()} after`,
    // On a shared machine the wall time measures the load; the CPU seconds over 2 cores are what the
    // run would take on 2 idle cores were its work spread over both (SFT's ranks are; eval's decoding
    // runs onnxruntime on 2 threads), an estimate, not a bound.
    `CPU ${cpuTotal.toFixed(0)} s: ${(cpuTotal / 2 / 60).toFixed(1)} min of 2 cores`,
    '',
  ].join('\n'),
);
const evalManifest = manifests.find((m) => m.stage === 'eval');
const evalRows = evalManifest
  ? (JSON.parse(fs.readFileSync(path.join(objects, evalManifest.fingerprint, 'metrics.json'), 'utf8')) as { comparison: Record<string, unknown>[] }).comparison.map((row) =>
      Object.fromEntries(Object.entries(row).filter(([k]) => ['model', 'count', 'acc2', 'acc4', 'macroF1', 'qwk'].includes(k))),
    )
  : [];
console.log(
  JSON.stringify(
    {
      pairs: written,
      exit_code: exitCode,
      wall_s: Number(wallS.toFixed(1)),
      target_s: TARGET_S,
      ratio_to_target: Number((wallS / TARGET_S).toFixed(3)),
      stage_duration_s: durations,
      stage_cpu_s: cpu,
      cpu_s: Number(cpuTotal.toFixed(1)),
      cpu_s_over_2_cores: Number((cpuTotal / 2).toFixed(1)),
      stage_share: Object.fromEntries(Object.entries(durations).map(([s, d]) => [s, Number((d / (stageTotal || 1)).toFixed(3))])),
      eval_dev: evalRows,
      load_before: loadBefore,
      load_after: loadAverage(),
      store,
    },
    null,
    2,
  ),
);
process.exit(exitCode ?? 1);
