/**
 * The lifecycle at real size: a Qwen2.5-0.5B-shaped checkpoint (scripts/real-fixture.ts: 24 layers,
 * bf16, sharded, random weights) through configs/chorus.yaml's stages on a slice of Chorus, with
 * `sft.init` on the fixture and LoRA adapters, then `pipeline export` and `pipeline score`, then
 * onnxruntime generation on the exported checkpoint against PyTorch on the same weights, batch and
 * threads (test/engine/reference/reference.py generate), measured in this run.
 *
 *   npm run bench:real                         (the full shape; about 40 minutes on 2 cores at load 10-36)
 *   npm run bench:real -- --layers 2 --hidden 128 --intermediate 256 --heads 4 --kv-heads 2
 *   BENCH_REAL_BACKEND=webgpu npm run bench:real   (the engine backend the stages train on)
 *
 * Each stage runs as its own `pipeline run --until <stage>` process (the earlier ones are cache
 * hits), so its seconds and peak RSS (GNU time's maximum resident set of the process tree's
 * largest member) are its own. One JSON line per stage: seconds, tokens/s where the stage's
 * metrics give it, peak RSS, backend and inference path; then the inference comparison; then a
 * summary line with the largest RSS seen. The work folder (--work, default <tmp>/lore-bench-real)
 * keeps the fixture and the store between runs; --fresh removes them first.
 *
 * The slice: --queries Chorus queries (seeded sample) with --per-query rated products each. The
 * stages' settings keep each to a few steps and short generations: the point is that every stage
 * runs at this size and what it costs, not what a model of random weights learns.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseCsv } from 'csv-parse/sync';
import { stringify as stringifyYaml } from 'yaml';
import { Rng } from '../pipeline/rng.ts';
import { fixtureOptionsFromArgs, realConfig, writeRealFixture } from '../scripts/real-fixture.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? (args[i + 1] as string) : fallback;
};
const work = resolve(flag('work', join(tmpdir(), 'lore-bench-real')));
const chorus = resolve(flag('chorus', join(root, '..', 'shared', 'data', 'chorus', 'Broad_Query_Set_individual_ratings.csv')));
const queries = Number(flag('queries', '6'));
const perQuery = Number(flag('per-query', '6'));
const backend = process.env.BENCH_REAL_BACKEND ?? flag('backend', 'wasm');
const threads = Number(flag('threads', String(availableParallelism())));
const fixtureOptions = fixtureOptionsFromArgs(args);
const peaks: number[] = [];

function emit(line: Record<string, unknown>): void {
  console.log(JSON.stringify(line));
}

/** MemAvailable (bytes) from /proc/meminfo: what the shared machine had free for the next stage. */
function availableMemory(): number | null {
  const match = existsSync('/proc/meminfo') ? /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8')) : null;
  return match ? Number(match[1]) * 1024 : null;
}

if (args.includes('--fresh')) rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
if (!existsSync(chorus)) {
  console.error(`bench:real needs Chorus at ${chorus} (give --chorus <csv>)`);
  process.exit(2);
}

// 1. The fixture, rebuilt only when its config.json would differ.
const fixture = join(work, 'fixture');
const wanted = JSON.stringify(realConfig(fixtureOptions));
const have = existsSync(join(fixture, 'config.json')) ? JSON.stringify(JSON.parse(readFileSync(join(fixture, 'config.json'), 'utf8'))) : '';
{
  const started = performance.now();
  let parameters: number | undefined;
  if (have !== wanted) {
    rmSync(fixture, { recursive: true, force: true });
    ({ parameters } = await writeRealFixture(fixture, fixtureOptions));
  }
  const rss = process.resourceUsage().maxRSS * 1024;
  peaks.push(rss);
  emit({ stage: 'fixture', seconds: round((performance.now() - started) / 1000), parameters: parameters ?? 'cached', config: realConfig(fixtureOptions), peak_rss_bytes: rss, load: loadavg()[0] });
}

// 2. The Chorus slice: a seeded sample of queries, the first rated products of each.
{
  const rows = parseCsv(readFileSync(chorus), { columns: true, skip_empty_lines: true }) as Array<Record<string, string>>;
  const byQuery = new Map<string, Array<Record<string, string>>>();
  for (const row of rows) byQuery.set(row.query as string, [...(byQuery.get(row.query as string) ?? []), row]);
  const chosen = new Rng(13, 'bench/real/slice').shuffle([...byQuery.keys()].sort()).slice(0, queries);
  const slice = chosen.flatMap((q) => (byQuery.get(q) as Array<Record<string, string>>).slice(0, perQuery));
  // JSONL, which import reads as it reads CSV (same column mapping), so no CSV writer is needed.
  writeFileSync(join(work, 'chorus-slice.jsonl'), slice.map((row) => JSON.stringify(row)).join('\n') + '\n');
}

// 3. chorus.yaml's stages at this size (no pretrain: sft starts from the fixture; no sft_2/sft_3 ensemble).
// The slice is the least that runs every stage: one step of one row per training stage, one or two
// prompts per decoding stage, 16 new tokens. Prompts leave out icl's evidence block and facts and
// sft drops the system prompt, so an SFT row (prompt and teacher rationale) is about 100-150
// tokens: each training step is a forward and backward of the full 24-layer model over that.
const lora = { r: 8, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'] };
const generationBudget = 16;
const maxLength = 256;
const config = {
  name: 'real',
  seed: 13,
  store: './store',
  engine: { backend, data_parallel: 1, inference: 'auto' },
  stages: {
    data: {
      uses: 'import',
      with: { path: 'chorus-slice.jsonl', columns: { query: 'query', title: 'name', description: 'description', label: 'final_rating' }, labels: { scale: 'rating0to3' }, name: 'chorus-slice' },
    },
    kg: { uses: 'kg', needs: ['data'] },
    icl: { uses: 'icl', needs: ['data', 'kg'], with: { facts: 0, shots: 0, rules: 'none', maxTokens: 300, evidence: false } },
    cot: { uses: 'cot', needs: ['icl', 'kg'], with: { rounds: [{ name: 'kg', context: 'kg' }, { name: 'rules', context: 'rules' }, { name: 'rationalise', context: 'gold' }] } },
    sft: {
      uses: 'sft',
      needs: ['cot', 'icl'],
      with: { init: './fixture', lora, drop_system_prompt: true, max_steps: 1, batch_size: 1, grad_accum: 1, learning_rate: 1e-4, warmup_steps: 0, max_length: maxLength, rl_pool: 0.3, eval_every: 0, eval_loss_examples: 1, eval_prompts: 1, max_new_tokens: generationBudget, checkpoint_every: 100 },
    },
    sample: { uses: 'sample', needs: ['sft', 'icl', 'kg'], with: { num_generations: 2, temperature: 1.0, limit: 2, max_completion_length: generationBudget, batch_size: 4 } },
    dpo: { uses: 'dpo', needs: ['sft', 'sample', 'icl', 'cot'], with: { lora, beta: 0.1, max_steps: 1, batch_size: 1, learning_rate: 5e-5, eval_prompts: 0, max_new_tokens: generationBudget, max_length: maxLength } },
    rl: {
      uses: 'grpo',
      needs: ['dpo', 'icl', 'kg'],
      with: {
        lora,
        rewards: [{ use: 'label', weight: 1 }, { use: 'format', weight: 0.2 }],
        max_steps: 1,
        prompts_per_step: 1,
        num_generations: 2,
        dynamic_sampling: false,
        replay_threshold: 0,
        learning_rate: 5e-5,
        eval_prompts: 0,
        max_completion_length: generationBudget,
        generation_batch_size: 2,
        mini_batch_size: 1,
      },
    },
    eval: { uses: 'eval', needs: ['sft', 'dpo', 'rl', 'icl', 'kg'], with: { split: 'dev', limit: 2, batch_size: 2, max_new_tokens: generationBudget } },
  },
};
const configPath = join(work, 'real.yaml');
writeFileSync(configPath, `# Written by bench/real.ts: configs/chorus.yaml's stages at Qwen2.5-0.5B size on a Chorus slice.\n${stringifyYaml(config)}`);

const pipelineBin = join(root, 'bin', 'pipeline.js');

/** Runs a command under GNU time; returns wall seconds, peak RSS (bytes) and its output. */
function timed(command: string[], label: string): { seconds: number; rss: number; stdout: string; ok: boolean } {
  const started = performance.now();
  const result = spawnSync('/usr/bin/time', ['-f', '%M', ...command], { cwd: work, encoding: 'utf8', maxBuffer: 1 << 28, env: { ...process.env, FORCE_COLOR: '0' } });
  const seconds = (performance.now() - started) / 1000;
  const stderrLines = (result.stderr ?? '').trim().split('\n');
  const rss = Number(stderrLines[stderrLines.length - 1]) * 1024;
  if (Number.isFinite(rss)) peaks.push(rss);
  const ok = result.status === 0;
  if (!ok) console.error(`${label} failed (exit ${result.status}):\n${stderrLines.slice(-40).join('\n')}\n${(result.stdout ?? '').split('\n').slice(-20).join('\n')}`);
  return { seconds, rss, stdout: result.stdout ?? '', ok };
}

function manifest(stage: string): Record<string, any> | undefined {
  const shown = spawnSync(process.execPath, [pipelineBin, 'show', configPath, stage, '--json'], { cwd: work, encoding: 'utf8', maxBuffer: 1 << 26 });
  return shown.status === 0 ? JSON.parse(shown.stdout) : undefined;
}

/** The last tokens/s a stage logged (sft logs it per step in metrics.jsonl), or null when it logs none. */
function tokensPerSecond(objectDir: string | undefined): number | null {
  const file = objectDir ? join(objectDir, 'metrics.jsonl') : '';
  if (!file || !existsSync(file)) return null;
  let last: number | null = null;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const value = (JSON.parse(line) as Record<string, unknown>).tokens_per_s;
    if (typeof value === 'number') last = round(value);
  }
  return last;
}

// 4. The stages, one process each.
let failedAt: string | undefined;
for (const stage of Object.keys(config.stages)) {
  const availableBefore = availableMemory();
  const run = timed([process.execPath, pipelineBin, 'run', configPath, '--until', stage], stage);
  const built = manifest(stage);
  // Built means published: a run cut short (gpu.sh's budget sends SIGINT) can exit 0 without it.
  const ok = run.ok && built !== undefined;
  emit({
    stage,
    ok,
    seconds: round(run.seconds),
    stage_seconds: built ? round(built.durationS) : null,
    tokens_per_s: tokensPerSecond(built?.path),
    peak_rss_bytes: run.rss,
    backend: built?.engine?.backend ?? null,
    inference: built?.engine?.inference ?? null,
    available_before_bytes: availableBefore,
    load: loadavg()[0],
  });
  if (!ok) {
    failedAt = stage;
    break;
  }
}

// 5. Export and score with the final model.
if (!failedAt) {
  const exportDir = join(work, 'export');
  rmSync(exportDir, { recursive: true, force: true });
  const exported = timed([process.execPath, pipelineBin, 'export', configPath, 'rl', '--out', exportDir], 'export');
  emit({ stage: 'export', ok: exported.ok, seconds: round(exported.seconds), peak_rss_bytes: exported.rss, load: loadavg()[0] });
  if (!exported.ok) failedAt = 'export';
  else {
    const input = join(work, 'score-input.jsonl');
    const rows = readFileSync(join(work, 'chorus-slice.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as Record<string, string>);
    writeFileSync(input, rows.slice(0, 2).map((r, i) => JSON.stringify({ id: `p${i}`, query: r.query, item: { title: r.name } })).join('\n') + '\n');
    const scored = timed([process.execPath, pipelineBin, 'score', configPath, '--model', 'rl', '--input', input, '--output', join(work, 'scores.jsonl'), '--batch-size', '2', '--max-new-tokens', String(generationBudget)], 'score');
    emit({ stage: 'score', ok: scored.ok, seconds: round(scored.seconds), pairs: 2, peak_rss_bytes: scored.rss, load: loadavg()[0] });
    if (!scored.ok) failedAt = 'score';
    else await compareInference(exportDir);
  }
}

/**
 * onnxruntime (the exported onnx/model.onnx, the engine's generation loop) against PyTorch (the
 * reference implementation on the export's safetensors): the same prompts, batch, budget and
 * threads, greedy, each in a process of its own so peak RSS is each side's alone.
 */
async function compareInference(exportDir: string): Promise<void> {
  const rng = new Rng(7, 'bench/real/prompts');
  const batch = Number(flag('gen-batch', '2'));
  const prompts = Array.from({ length: batch }, () => Array.from({ length: 64 }, () => rng.int(151000)));
  const newTokens = Number(flag('new-tokens', '16'));
  const spec = { dir: exportDir, prompts, new_tokens: newTokens, threads, rounds: 2 };
  const tsx = join(root, 'node_modules', '.bin', 'tsx');
  const ort = timed([tsx, join(root, 'bench', 'real-ort.ts'), JSON.stringify(spec)], 'onnxruntime generation');
  const torch = timed(['/usr/bin/python3', join(root, 'test', 'engine', 'reference', 'reference.py'), 'generate', JSON.stringify(spec)], 'pytorch generation');
  const hf = timed([tsx, join(root, 'bench', 'real-ort.ts'), JSON.stringify({ ...spec, rounds: 1, runner: 'transformers' })], 'transformers.js generation');
  if (!ort.ok || !torch.ok) {
    emit({ stage: 'inference', ok: false, onnxruntime_ok: ort.ok, pytorch_ok: torch.ok });
    failedAt = 'inference';
    return;
  }
  const last = (stdout: string) => JSON.parse(stdout.trim().split('\n').pop() as string);
  const o = last(ort.stdout);
  const t = last(torch.stdout);
  const h = hf.ok ? last(hf.stdout) : undefined;
  const tokens = batch * newTokens;
  emit({
    stage: 'inference',
    ok: true,
    batch,
    prompt_tokens: 64,
    new_tokens: newTokens,
    threads,
    onnxruntime_tokens_per_s: round(tokens / o.seconds),
    pytorch_tokens_per_s: round(tokens / t.seconds),
    ratio_tokens_per_s: round(t.seconds / o.seconds),
    onnxruntime_peak_rss_bytes: ort.rss,
    pytorch_peak_rss_bytes: torch.rss,
    ratio_peak_rss: round(ort.rss / torch.rss),
    same_greedy_tokens_pytorch: JSON.stringify(o.tokens) === JSON.stringify(t.tokens),
    // The exported checkpoint in transformers.js (local files): the engine's greedy tokens, 16 steps.
    transformers_js_loads: hf.ok,
    same_greedy_tokens_transformers_js: h ? JSON.stringify(o.tokens) === JSON.stringify(h.tokens) : false,
    torch: t.torch,
    load: loadavg()[0],
  });
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

emit({ summary: true, ok: !failedAt, failed_at: failedAt ?? null, largest_rss_bytes: Math.max(...peaks), backend, work });
if (failedAt) process.exit(1);
