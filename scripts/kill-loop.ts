/**
 * Kills `pipeline run`, `run --force` and `gc` with SIGKILL at random moments, over and over, on a
 * config with a real SFT stage (tiny, with step checkpoints) and exec stages that write hundreds of
 * files, and checks after every kill that a full verification (`pipeline verify`, every file
 * re-hashed) finds no damaged object. Every tenth round, and at the end, a run left to finish must
 * succeed and give the right answer from what the store holds. Issue 34's closing check. A kill
 * that left something in the store's trash landed while deleting: those are counted apart.
 *
 *   npx tsx scripts/kill-loop.ts [--rounds 60] [--seed 1] [--keep]
 *
 * Prints one line per round and a JSON summary; exits 1 at the first inconsistent store, naming it
 * (kept for a look). The test suite's deterministic variant is test/pipeline/kill-points.test.ts.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { Rng } from '../pipeline/rng.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '60' }, seed: { type: 'string', default: '1' }, keep: { type: 'boolean', default: false } } });
const rounds = Number(values.rounds);
const rng = new Rng(Number(values.seed), 'kill-loop');
const bin = path.resolve(import.meta.dirname, '..', 'bin', 'pipeline.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'kill-loop-'));
const FILES = 400;

// `files` copies sft's config FILES times (an object with many files, slow to delete); `tally`
// counts what it sees of them, so a half object upstream shows as a wrong count.
writeFileSync(
  path.join(dir, 'k.yaml'),
  `name: kill-loop
seed: 3
engine: { backend: auto }
stages:
  world: { uses: world, with: { queries: 16, itemsPerType: 2, candidates: 4 } }
  kg: { uses: kg, needs: [world] }
  icl: { uses: icl, needs: [world, kg], with: { facts: 0, shots: 0, rules: none } }
  cot: { uses: cot, needs: [icl, kg] }
  sft:
    uses: sft
    needs: [cot, icl]
    with:
      drop_system_prompt: true
      vocab_size: 320
      model: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 }
      max_steps: 12
      checkpoint_every: 3
      batch_size: 8
      eval_prompts: 0
  files: { uses: exec, needs: [sft], with: { env: { V: 0 }, command: 'for i in $(seq 1 ${FILES}); do cp "$PIPELINE_INPUT_SFT/config.json" "$PIPELINE_OUT/f$i.json"; done' } }
  tally: { uses: exec, needs: [files], with: { command: 'ls "$PIPELINE_INPUT_FILES"/f*.json | wc -l > "$PIPELINE_OUT/count.txt"' } }
`,
);

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs the CLI; with `killAfterMs`, SIGKILLs it then (if it has not finished). */
function pipeline(args: string[], killAfterMs?: number): Promise<Outcome> {
  const started = performance.now();
  const child = spawn(process.execPath, [bin, ...args], { cwd: dir, env: { ...process.env, CI: 'true' } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const timer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  return new Promise((resolve) =>
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, seconds: (performance.now() - started) / 1000 });
    }),
  );
}

function fail(message: string, outcome?: Outcome): never {
  console.error(`INCONSISTENT: ${message}\nstore kept at ${dir}`);
  if (outcome) console.error(`--- stdout\n${outcome.stdout}\n--- stderr\n${outcome.stderr}`);
  process.exit(1);
}

async function verify(round: number): Promise<void> {
  const checked = await pipeline(['verify', 'k.yaml']);
  if (checked.code !== 0) fail(`round ${round}: pipeline verify found damage`, checked);
}

/** A run left to finish succeeds, and tally saw every file of `files`. */
async function completeRun(round: number, version: number): Promise<void> {
  const run = await pipeline(['run', 'k.yaml', '--set', `stages.files.with.env.V=${version}`]);
  if (run.code !== 0) fail(`round ${round}: a run left to finish failed`, run);
  const status = JSON.parse((await pipeline(['status', 'k.yaml', '--json', '--set', `stages.files.with.env.V=${version}`])).stdout) as { store: string; stages: { name: string; fingerprint: string; upToDate: boolean }[] };
  if (!status.stages.every((stage) => stage.upToDate)) fail(`round ${round}: after a finished run, status says not up to date`);
  const tally = status.stages.find((stage) => stage.name === 'tally');
  const count = readFileSync(path.join(status.store, 'objects', tally?.fingerprint ?? '', 'count.txt'), 'utf8').trim();
  if (count !== String(FILES)) fail(`round ${round}: tally counted ${count} files of ${FILES}`);
}

// The first build, timed, sets the range of kill moments: anywhere from start-up to past the end.
const first = await pipeline(['run', 'k.yaml']);
if (first.code !== 0) fail('the first run failed', first);
const fullRunMs = first.seconds * 1000;
console.log(`first run: ${first.seconds.toFixed(1)} s (the machine's load: ${os.loadavg()[0]?.toFixed(1)})`);

// A gc that has something to delete (V=0's files and tally, once V=1 is built), timed the same way.
if ((await pipeline(['run', 'k.yaml', '--set', 'stages.files.with.env.V=1'])).code !== 0) fail('the V=1 run failed');
const firstGc = await pipeline(['gc', 'k.yaml', '--set', 'stages.files.with.env.V=1']);
if (firstGc.code !== 0 || !firstGc.stdout.includes('removed object')) fail('the first gc removed nothing', firstGc);
console.log(`first gc: ${firstGc.seconds.toFixed(1)} s`);

/** What a killed command was deleting: the trash is not empty right after the kill. */
function trashEntries(): number {
  try {
    return readdirSync(path.join(dir, 'checkpoints', 'trash')).length;
  } catch {
    return 0;
  }
}

const tally = { rounds: 0, killed: 0, killedMidDelete: 0, finishedFirst: 0, byAction: {} as Record<string, { rounds: number; killed: number; killedMidDelete: number }> };
const forceable = ['sft', 'files', 'tally', 'cot'];
// How long each kind of command takes when left alone: kill moments are drawn from start-up to just
// past it, so they land all through it. Updated whenever one finishes before its kill.
const expectedMs: Record<string, number> = { run: fullRunMs, 'run --force': fullRunMs, gc: firstGc.seconds * 1000 };
for (let round = 1; round <= rounds; round++) {
  const version = rng.int(3);
  const set = ['--set', `stages.files.with.env.V=${version}`];
  const forced = rng.pick(forceable);
  // Round robin, so each kind gets a third of the kills.
  const kind = (['run', 'run --force', 'gc'] as const)[round % 3] as 'run' | 'run --force' | 'gc';
  const args = kind === 'run' ? ['run', 'k.yaml', ...set] : kind === 'run --force' ? ['run', 'k.yaml', '--force', forced, ...set] : ['gc', 'k.yaml', ...set];
  const action = kind === 'run --force' ? `run --force ${forced}` : kind;
  const killAfterMs = Math.round(200 + rng.next() * (expectedMs[kind] as number) * 1.05);
  const outcome = await pipeline(args, killAfterMs);
  const killed = outcome.signal === 'SIGKILL';
  if (!killed) expectedMs[kind] = outcome.seconds * 1000;
  const midDelete = killed && trashEntries() > 0;
  tally.rounds += 1;
  tally.killed += killed ? 1 : 0;
  tally.finishedFirst += killed ? 0 : 1;
  const counts = (tally.byAction[kind] ??= { rounds: 0, killed: 0, killedMidDelete: 0 });
  counts.rounds += 1;
  counts.killed += killed ? 1 : 0;
  counts.killedMidDelete += midDelete ? 1 : 0;
  tally.killedMidDelete += midDelete ? 1 : 0;
  if (!killed && outcome.code !== 0) fail(`round ${round}: ${action} failed without being killed`, outcome);
  await verify(round);
  console.log(`round ${round}: ${action} (V=${version}) ${killed ? `killed after ${killAfterMs} ms${midDelete ? ' mid-delete' : ''}` : `finished in ${outcome.seconds.toFixed(1)} s`}; verify ok`);
  if (round % 10 === 0) await completeRun(round, version);
}
await completeRun(rounds, 0);
await verify(rounds);
console.log(JSON.stringify({ ...tally, first_run_s: Number(first.seconds.toFixed(1)), load_1min: os.loadavg()[0], consistent: true }, null, 2));
if (!values.keep) rmSync(dir, { recursive: true, force: true });
