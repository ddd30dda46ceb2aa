/**
 * Picks and starts the TensorFlow.js backend once per process, and supplies what tfjs-core alone
 * lacks on Node (gradients, a wasm `UnsortedSegmentSum`). See the package README ("What tfjs-wasm needed").
 *
 * Order for `auto`: webgpu on a hardware adapter > tfjs-node-gpu (if it imports and a GPU is visible)
 * > tfjs-node > wasm > cpu. webgpu on a software adapter (Mesa) only when asked for by name.
 * The two tfjs-node packages are never dependencies of this project (their install downloads
 * libtensorflow); they are loaded with a guarded dynamic `import()` when a user installed them.
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire, register } from 'node:module';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import type { EngineLogger, EngineOptions, EngineRecord } from '../host.ts';
import { loadFusedKernels } from './fused.ts';
import { registerWasmKernels } from './wasm-kernels.ts';
import { withWasmThreads } from './wasm-threads.ts';
import { startWebgpu, type AdapterRecord } from './webgpu.ts';

export type BackendName = EngineOptions['backend'];

const INSTALL_HELP: Record<'tensorflow-gpu' | 'tensorflow', string> = {
  'tensorflow-gpu':
    'install it with `npm install @tensorflow/tfjs-node-gpu` (needs internet at install time to fetch ' +
    'libtensorflow, an NVIDIA GPU, CUDA 11.2 and cuDNN 8)',
  tensorflow:
    'install it with `npm install @tensorflow/tfjs-node` (needs internet at install time to fetch libtensorflow)',
};

/**
 * tfjs-core's `dist/register_all_gradients.js` is ESM whose imports have no file extension, which
 * Node's resolver refuses. This resolve hook, active only for relative specifiers inside
 * tfjs-core's dist folder, retries them with `.js`. Inlined as a data: URL so it works the same
 * under tsx, vitest and plain node without a separate loader file.
 */
const RESOLVE_HOOK = `
export async function resolve(specifier, context, next) {
  const parent = context.parentURL || '';
  if (parent.includes('/@tensorflow/tfjs-core/dist/') && specifier.startsWith('.') && !/\\.[cm]?js$/.test(specifier)) {
    try { return await next(specifier + '.js', context); } catch {}
  }
  return next(specifier, context);
}`;

let started: Promise<EngineRecord> | undefined;

/**
 * Starts the backend named in `config.backend` (idempotent: later calls, with any config, return the
 * first call's record; one process runs one backend). Logs the choice.
 */
export function initEngine(config: EngineOptions, log?: EngineLogger): Promise<EngineRecord> {
  if (started) {
    void started.then((record) => {
      if (config.backend !== 'auto' && config.backend !== record.backend) {
        log?.warn(`engine: backend ${config.backend} requested, but this process already runs ${record.backend}`);
      }
    });
    return started;
  }
  started = start(config, log);
  // A failed start may be retried (e.g. with another backend).
  started.catch(() => (started = undefined));
  return started;
}

async function start(config: EngineOptions, log?: EngineLogger): Promise<EngineRecord> {
  await registerGradients();
  const adapter: { record?: AdapterRecord } = {};
  const backend = await selectBackend(config.backend, log, adapter, config.wasm_threads);
  const record: EngineRecord = {
    backend,
    tfjs: tf.version_core,
    requested: config.backend,
    ...adapter.record,
  };
  if (backend === 'wasm') {
    record.simd = String(tf.env().getBool('WASM_HAS_SIMD_SUPPORT'));
    record.threads = String((await import('@tensorflow/tfjs-backend-wasm')).getThreadsCount());
    record.fused_kernels = await loadFusedKernels();
    if (!record.fused_kernels.startsWith('on')) log?.warn(`engine: fused kernels ${record.fused_kernels}; the unfused tfjs ops run (slower, same results within 1e-5)`);
  }
  const on = adapter.record ? ` (${adapter.record.adapter}, ${adapter.record.vendor}, via ${adapter.record.route})` : '';
  log?.info(`engine: tfjs ${record.tfjs} on ${backend}${on}${config.backend === 'auto' ? ' (auto)' : ''}`);
  if (adapter.record?.software === 'true') log?.warn(`engine: webgpu runs on a software renderer (${adapter.record.adapter}): correct but slower than wasm`);
  return record;
}

/**
 * Registers tfjs-core's gradients. Fast path: esbuild bundles `register_all_gradients.js` (about
 * 400 files) into one module, imported from memory (0.5 s). Fallback, when esbuild's native binary
 * is absent: the resolve hook above and Node loading each file (3 s).
 */
async function registerGradients(): Promise<void> {
  // A gradient already present means someone (e.g. the full @tensorflow/tfjs) registered them all.
  if (tf.getGradient('Add') !== undefined) return;
  const entry = createRequire(import.meta.url).resolve('@tensorflow/tfjs-core/dist/register_all_gradients.js');
  let bundled: string | undefined;
  try {
    const esbuild = await import('esbuild');
    const result = await esbuild.build({ entryPoints: [entry], bundle: true, format: 'esm', platform: 'node', write: false, logLevel: 'silent' });
    bundled = result.outputFiles[0]?.text;
  } catch {
    bundled = undefined;
  }
  if (bundled) await import(`data:text/javascript;base64,${Buffer.from(bundled).toString('base64')}`);
  else {
    register(`data:text/javascript,${encodeURIComponent(RESOLVE_HOOK)}`);
    await import(pathToFileURL(entry).href);
  }
  if (tf.getGradient('Add') === undefined) throw new Error('engine: tfjs-core gradients failed to register');
}

/**
 * Starts one backend (not idempotent: `initEngine` is the entry point). Exported so the failure
 * messages can be tested without disturbing the process's engine.
 */
export async function selectBackend(requested: BackendName, log?: EngineLogger, adapter: { record?: AdapterRecord } = {}, wasmThreads = 1): Promise<string> {
  const startWasm = () => startWasmWith(wasmThreads);
  const webgpu = (requireHardware: boolean) => async () => {
    // auto looks for a GPU only where the kernel shows one: Dawn's probe costs a second and prints
    // driver warnings on machines that have none.
    if (requireHardware && !gpuDeviceVisible()) throw new Error('engine.backend webgpu: no GPU device (/proc/driver/nvidia/gpus and /dev/dri are absent or empty)');
    adapter.record = await startWebgpu(requireHardware);
    return 'webgpu';
  };
  switch (requested) {
    case 'webgpu':
      return webgpu(false)();
    case 'tensorflow-gpu':
      return startNode('@tensorflow/tfjs-node-gpu', 'tensorflow-gpu', true);
    case 'tensorflow':
      return startNode('@tensorflow/tfjs-node', 'tensorflow', false);
    case 'wasm':
      return startWasm();
    case 'cpu':
      return startCpu();
    case 'auto': {
      for (const attempt of [
        webgpu(true),
        () => startNode('@tensorflow/tfjs-node-gpu', 'tensorflow-gpu', true),
        () => startNode('@tensorflow/tfjs-node', 'tensorflow', false),
        startWasm,
      ]) {
        try {
          return await attempt();
        } catch (error) {
          log?.debug(`engine: ${(error as Error).message.split('\n')[0]}`);
        }
      }
      return startCpu();
    }
  }
}

const listed = (dir: string) => existsSync(dir) && readdirSync(dir).length > 0;

/** True when the NVIDIA driver lists at least one GPU (Linux); tfjs-node-gpu silently runs on CPU otherwise. */
function gpuVisible(): boolean {
  return listed('/proc/driver/nvidia/gpus');
}

/** An NVIDIA GPU or any DRM device (AMD, Intel, or NVIDIA's render node) that Vulkan could drive. */
function gpuDeviceVisible(): boolean {
  return gpuVisible() || listed('/dev/dri');
}

async function startNode(pkg: string, name: 'tensorflow-gpu' | 'tensorflow', needsGpu: boolean): Promise<string> {
  try {
    await import(pkg);
  } catch (error) {
    throw new Error(
      `engine.backend ${name}: ${pkg} is not installed or failed to load (${(error as Error).message.split('\n')[0]}); ` +
        `${INSTALL_HELP[name]}. Or use engine.backend: wasm.`,
    );
  }
  if (needsGpu && !gpuVisible()) {
    throw new Error(`engine.backend ${name}: ${pkg} loaded but no NVIDIA GPU is visible (/proc/driver/nvidia/gpus is empty)`);
  }
  if (!(await tf.setBackend('tensorflow'))) throw new Error(`engine.backend ${name}: backend 'tensorflow' failed to start`);
  return name;
}

async function startWasmWith(threads: number): Promise<string> {
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`engine.wasm_threads must be a positive integer, got ${threads}`);
  await import('@tensorflow/tfjs-backend-wasm');
  registerWasmKernels();
  const started = threads === 1 ? await tf.setBackend('wasm') : await withWasmThreads(threads, () => tf.setBackend('wasm'));
  if (!started) throw new Error("engine.backend wasm: backend 'wasm' failed to start");
  return 'wasm';
}

async function startCpu(): Promise<string> {
  await import('@tensorflow/tfjs-backend-cpu');
  if (!(await tf.setBackend('cpu'))) throw new Error("engine.backend cpu: backend 'cpu' failed to start");
  return 'cpu';
}
