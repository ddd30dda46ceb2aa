/**
 * Wall time of a whole `pipeline run` on a fresh store, with each stage's duration and the SFT
 * figures the targets name: the smoke run must finish in under 3 minutes on 2 cores with
 * dev format validity >= 0.95; the lore run must finish SFT in under 15 minutes with dev accuracy
 * above the lexical baseline's.
 *
 *   npm run bench:smoke                               # configs/smoke.yaml
 *   npm run bench:lore                                # configs/lore.yaml up to sft
 *   npx tsx bench/runs.ts configs/lore.yaml           # the whole default run
 *   npx tsx bench/runs.ts configs/lore.yaml --until sft
 *
 * Prints one JSON object: wall_s, the targets (when the config has them) and the ratios to them, each
 * stage's duration from its manifest, the sft stage's dev metrics with its margin over the lexical
 * baseline on the same dev prompts, the eval stage's test comparison when the run has one, and the
 * load average before and after (the machine may be shared: figures from a loaded machine are
 * slower, not wrong). Peak memory is the CLI's own: run it under `/usr/bin/time -v` for that. Extra
 * arguments go to `pipeline run`.
 *
 * `--inference-paths` runs the config once more with `engine.inference=tfjs` (the first run keeps
 * the config's own setting, auto: onnxruntime where it loads) into a second fresh store, and adds
 * `decode_stage_s`: the duration of every sample, grpo and eval stage on each path, and their ratio.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** The targets: the smoke run's wall time, and the SFT stage's duration of the lore run. */
const TARGET_S: Record<string, number> = { smoke: 180 };
const SFT_TARGET_S: Record<string, number> = { lore: 900 };
const repo = path.resolve(import.meta.dirname, '..');
const config = process.argv[2] ?? 'configs/smoke.yaml';
const inferencePaths = process.argv.includes('--inference-paths');
const runArgs = process.argv.slice(3).filter((a) => a !== '--inference-paths');
const loadAverage = () => os.loadavg()[0] ?? 0;
const loadBefore = loadAverage();

interface Manifest {
  stage: string;
  type: string;
  fingerprint: string;
  durationS?: number;
  metrics?: Record<string, unknown>;
  engine?: Record<string, string>;
}

/** `pipeline run` on a fresh store; exits the bench when it fails. */
function runPipeline(extraArgs: string[]): { wallS: number; store: string; manifests: Manifest[] } {
  const store = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-run-'));
  const started = performance.now();
  const run = spawnSync(process.execPath, [path.join(repo, 'bin', 'pipeline.js'), 'run', config, '--store', store, ...runArgs, ...extraArgs], {
    cwd: repo,
    env: { ...process.env, CI: 'true' },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const wallS = (performance.now() - started) / 1000;
  if (run.status !== 0) {
    console.error(run.stdout);
    console.error(`pipeline run ${config} exited with ${run.status}; store kept at ${store}`);
    process.exit(1);
  }
  const objects = path.join(store, 'objects');
  return { wallS, store, manifests: fs.readdirSync(objects).map((d) => JSON.parse(fs.readFileSync(path.join(objects, d, 'manifest.json'), 'utf8'))) };
}

const { wallS, store, manifests } = runPipeline([]);
const objects = path.join(store, 'objects');
const stages = Object.fromEntries(manifests.map((m) => [m.stage, m.durationS]));
const sftMetrics = manifests.find((m) => m.stage === 'sft')?.metrics ?? {};
// The eval stage's comparison table (test split), when the run has one: each model against the baseline.
const evalManifest = manifests.find((m) => m.stage === 'eval');
const evalComparison = evalManifest
  ? (JSON.parse(fs.readFileSync(path.join(objects, evalManifest.fingerprint, 'metrics.json'), 'utf8')) as { comparison: Record<string, unknown>[] }).comparison.map((row) =>
      Object.fromEntries(Object.entries(row).filter(([k]) => ['model', 'count', 'acc2', 'acc4', 'macroF1', 'qwk', 'intervals', 'formatValidity', 'stepVerificationRate'].includes(k))),
    )
  : undefined;
const name = path.basename(config, path.extname(config));
const target = TARGET_S[name];
const sftTarget = SFT_TARGET_S[name];
const sftSeconds = stages.sft;
const num = (key: string) => (typeof sftMetrics[key] === 'number' ? (sftMetrics[key] as number) : undefined);
// The dev probe's margin over the lexical baseline scored on the same prompts (positive: the model wins).
const margins = Object.fromEntries(
  ['acc4', 'acc2', 'macro_f1'].flatMap((k) => {
    const model = num(`dev_${k}`);
    const baseline = num(`baseline_dev_${k}`);
    return model !== undefined && baseline !== undefined ? [[`${k}_over_baseline`, Number((model - baseline).toFixed(4))]] : [];
  }),
);
// The stages that decode, on each inference path (the second run: --inference-paths).
const DECODING = ['sample', 'grpo', 'eval'];
const decodeSeconds = (list: Manifest[]) => Object.fromEntries(list.filter((m) => DECODING.includes(m.type)).map((m) => [m.stage, m.durationS ?? null]));
let decodeStages: Record<string, unknown> | undefined;
if (inferencePaths) {
  const tfjsRun = runPipeline(['--set', 'engine.inference=tfjs']);
  const first = decodeSeconds(manifests);
  const tfjs = decodeSeconds(tfjsRun.manifests);
  // What the first run decoded on, as its manifests recorded it (auto: onnxruntime where it loads).
  const firstPath = manifests.find((m) => DECODING.includes(m.type))?.engine?.inference ?? 'config';
  decodeStages = {
    [firstPath]: first,
    tfjs,
    tfjs_over_first: Object.fromEntries(Object.keys(first).map((k) => [k, first[k] && tfjs[k] ? Number(((tfjs[k] as number) / (first[k] as number)).toFixed(2)) : null])),
    tfjs_wall_s: Number(tfjsRun.wallS.toFixed(1)),
  };
  fs.rmSync(tfjsRun.store, { recursive: true, force: true });
}
console.log(
  JSON.stringify(
    {
      config,
      wall_s: Number(wallS.toFixed(1)),
      ...(target ? { target_s: target, ratio_to_target: Number((wallS / target).toFixed(3)) } : {}),
      ...(sftTarget && sftSeconds !== undefined ? { sft_target_s: sftTarget, sft_ratio_to_target: Number((sftSeconds / sftTarget).toFixed(3)) } : {}),
      stage_duration_s: stages,
      sft: Object.fromEntries(Object.entries(sftMetrics).filter(([k]) => k.startsWith('dev_') || k.startsWith('baseline_') || k === 'steps' || k === 'data_parallel_ranks')),
      sft_dev_margin: margins,
      ...(evalComparison ? { eval_test: evalComparison } : {}),
      ...(decodeStages ? { decode_stage_s: decodeStages } : {}),
      load_before: Number(loadBefore.toFixed(2)),
      load_after: Number(loadAverage().toFixed(2)),
    },
    null,
    2,
  ),
);
fs.rmSync(store, { recursive: true, force: true });
