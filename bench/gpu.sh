#!/usr/bin/env bash
# One-call GPU check, for a machine lent for minutes: on a fresh copy of the repository (npm ci is
# run here when node_modules is absent; nothing else needs installing), prints the adapter WebGPU
# finds, runs bench:scale at Qwen2.5-0.5B's full shape on webgpu (full and LoRA training tokens/s,
# generation tokens/s, share of the fp32 peak) while sampling GPU memory (nvidia-smi, when there is
# one), then the real-size lifecycle (bench:real on webgpu), each part under what is left of a
# 10-minute budget, and ends with one JSON line whatever happened.
#
#   bash bench/gpu.sh                       (the full shape)
#   GPU_CHECK_REDUCED=1 bash bench/gpu.sh   (a reduced shape: what this repository's CI and a
#                                           software adapter such as Mesa's llvmpipe can finish)
#   GPU_CHECK_BUDGET_S=570                  (seconds for everything after npm ci; default 570)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=${GPU_CHECK_WORK:-$(mktemp -d -t lore-gpu-check-XXXXXX)}
mkdir -p "$work"
budget=${GPU_CHECK_BUDGET_S:-570}
reduced=${GPU_CHECK_REDUCED:-0}

if [ ! -d node_modules ]; then
  # onnxruntime-node's postinstall would fetch CUDA provider files; the CPU provider needs none.
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund >"$work/npm-ci.log" 2>&1 || { echo "npm ci failed: see $work/npm-ci.log" >&2; tail -20 "$work/npm-ci.log" >&2; }
fi
start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }

# GPU memory, sampled every 200 ms into a file while the benchmarks run.
sampler=""
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=memory.used,memory.total,name --format=csv,noheader,nounits -lms 200 >"$work/gpu-memory.csv" 2>/dev/null &
  sampler=$!
fi

echo "== adapter" >&2
npx tsx -e "(async () => {
  const { initEngine } = await import('#engine');
  const record = await initEngine({ backend: 'webgpu' }, { info: () => {}, warn: (m) => console.error(m), debug: () => {} });
  console.log(JSON.stringify({ backend: record.backend, adapter: record.adapter ?? null, vendor: record.vendor ?? null, architecture: record.architecture ?? null, route: record.route ?? null, software: record.software ?? null }));
})().catch((error) => { console.error(error); process.exit(1); });" >"$work/adapter.json" 2>"$work/adapter.log"
cat "$work/adapter.json" >&2

if [ "$reduced" = 1 ]; then
  scale_flags=(--layers 1 --vocab 8192 --batch 1 --seq 16 --steps 1 --gen-batch 1 --new-tokens 4)
  real_flags=(--layers 2 --hidden 128 --intermediate 256 --heads 4 --kv-heads 2 --max-positions 2048)
else
  scale_flags=(--steps 2)
  real_flags=()
fi

echo "== bench:scale on webgpu (${scale_flags[*]:-full shape})" >&2
timeout --signal=INT "$(( $(left) * 2 / 5 ))" npx tsx bench/scale.ts --backend webgpu "${scale_flags[@]}" >"$work/scale.log" 2>&1
scale_exit=$?
tail -1 "$work/scale.log" >&2

echo "== bench:real on webgpu (${real_flags[*]:-full shape})" >&2
if [ "$(left)" -gt 30 ]; then
  BENCH_REAL_BACKEND=webgpu timeout --signal=INT "$(( $(left) - 15 ))" npx tsx bench/real.ts --work "$work/real" "${real_flags[@]}" >"$work/real.log" 2>&1
  real_exit=$?
else
  echo "no time left for the lifecycle" >"$work/real.log"
  real_exit=124
fi
grep '^{' "$work/real.log" | tail -3 >&2

[ -n "$sampler" ] && kill "$sampler" 2>/dev/null

# The one JSON line: every part's result (null where it did not finish) and the exit codes.
WORK="$work" SCALE_EXIT=$scale_exit REAL_EXIT=$real_exit REDUCED=$reduced SECONDS_USED=$(( $(date +%s) - start )) node -e '
  const fs = require("node:fs");
  const w = process.env.WORK;
  const read = (f) => (fs.existsSync(`${w}/${f}`) ? fs.readFileSync(`${w}/${f}`, "utf8") : "");
  const json = (line) => { try { return JSON.parse(line); } catch { return null; } };
  const jsonLines = (text) => text.split("\n").filter((l) => l.startsWith("{")).map(json).filter(Boolean);
  const adapter = json(read("adapter.json").trim());
  const scale = jsonLines(read("scale.log")).pop() ?? null;
  const real = jsonLines(read("real.log"));
  let peak = null, total = null, name = null;
  for (const line of read("gpu-memory.csv").split("\n")) {
    const [used, all, gpu] = line.split(",").map((s) => s.trim());
    if (!used || Number.isNaN(Number(used))) continue;
    peak = Math.max(peak ?? 0, Number(used)); total = Number(all); name = gpu;
  }
  console.log(JSON.stringify({
    gpu_check: true,
    reduced: process.env.REDUCED === "1",
    adapter,
    gpu: name,
    scale,
    scale_exit: Number(process.env.SCALE_EXIT),
    lifecycle: real.filter((l) => l.stage && l.stage !== "fixture"),
    lifecycle_summary: real.find((l) => l.summary) ?? null,
    lifecycle_exit: Number(process.env.REAL_EXIT),
    peak_gpu_memory_mib: peak,
    gpu_memory_total_mib: total,
    peak_gpu_memory_share: peak !== null && total ? Number((peak / total).toFixed(3)) : null,
    seconds: Number(process.env.SECONDS_USED),
    work: w,
  }));
'
