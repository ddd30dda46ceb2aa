/**
 * How long the command line takes to start: `pipeline --version` and `pipeline plan configs/lore.yaml`
 * through bin/pipeline.js as a user's shell runs them, from the compiled dist/ and, in the same run
 * as the reference, from the TypeScript sources through tsx (PIPELINE_FROM_SOURCE=1, the way every
 * command started before dist/ existed).
 *
 *   npm run bench:cli [-- --runs 7]
 *   taskset -c 1 npm run bench:cli      (one core, as the targets are stated; the children inherit it)
 *
 * Prints, per command and way, the median wall time and the median CPU time (user + system, read
 * by the child itself at exit), and the ratio of source to compiled. CPU time is the figure to
 * read on a busy machine: wall time there measures the queue for a core. Targets (issue 32):
 * `--version` <= 0.3 s and `plan` <= 1 s on one quiet core.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(import.meta.dirname, '..');
const BIN = path.join(ROOT, 'bin', 'pipeline.js');
const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
const RUNS = Number(values.runs);

if (!existsSync(path.join(ROOT, 'dist', 'sources.json'))) {
  console.error('no dist/: run `npm run build` first');
  process.exit(1);
}

const scratch = mkdtempSync(path.join(tmpdir(), 'cli-startup-'));
const cpuFile = path.join(scratch, 'cpu.json');
// The child writes its own CPU time when it exits: spawnSync reports no resource usage.
const probe = `data:text/javascript,${encodeURIComponent(
  `import { writeFileSync } from 'node:fs'; process.on('exit', () => { const u = process.cpuUsage(); writeFileSync(${JSON.stringify(cpuFile)}, JSON.stringify(u)); });`,
)}`;

interface Timing {
  wallS: number;
  cpuS: number;
}

function once(args: string[], fromSource: boolean): Timing {
  const started = performance.now();
  const run = spawnSync(process.execPath, ['--import', probe, BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, CI: 'true', PIPELINE_FROM_SOURCE: fromSource ? '1' : '0' },
    encoding: 'utf8',
  });
  const wallS = (performance.now() - started) / 1000;
  if (run.status !== 0) throw new Error(`pipeline ${args.join(' ')} exited ${run.status}:\n${run.stderr}`);
  const { user, system } = JSON.parse(readFileSync(cpuFile, 'utf8')) as { user: number; system: number };
  return { wallS, cpuS: (user + system) / 1e6 };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;

function measure(args: string[], fromSource: boolean): Timing {
  once(args, fromSource); // warm the file cache and tsx's transpile cache
  const runs = Array.from({ length: RUNS }, () => once(args, fromSource));
  return { wallS: median(runs.map((r) => r.wallS)), cpuS: median(runs.map((r) => r.cpuS)) };
}

const commands: { name: string; args: string[]; targetS: number }[] = [
  { name: '--version', args: ['--version'], targetS: 0.3 },
  { name: 'plan configs/lore.yaml', args: ['plan', 'configs/lore.yaml'], targetS: 1 },
];

try {
  // availableParallelism follows the CPU affinity (sched_getaffinity), so it says whether taskset took.
  console.log(`load average before: ${loadavg().map((l) => l.toFixed(1)).join(' ')}; cores this process may use: ${availableParallelism()}; median of ${RUNS} runs after one warm-up`);
  for (const { name, args, targetS } of commands) {
    const compiled = measure(args, false);
    const source = measure(args, true);
    console.log(
      `${name}: compiled ${compiled.wallS.toFixed(3)} s wall, ${compiled.cpuS.toFixed(3)} s CPU (target ${targetS} s: ${compiled.cpuS <= targetS ? 'met' : 'MISSED'} in CPU time); ` +
        `sources through tsx ${source.wallS.toFixed(3)} s wall, ${source.cpuS.toFixed(3)} s CPU; ratio source/compiled ${(source.wallS / compiled.wallS).toFixed(2)} wall, ${(source.cpuS / compiled.cpuS).toFixed(2)} CPU`,
    );
  }
  console.log(`load average after: ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
