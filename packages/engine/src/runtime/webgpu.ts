/**
 * The `webgpu` backend on Node: Dawn from the npm package `webgpu` (its linux-x64 `dawn.node` ships
 * inside the tarball, so it installs offline) under `@tensorflow/tfjs-backend-webgpu`. See the
 * package README ("What tfjs-wasm needed", its WebGPU line).
 *
 * The adapter is chosen here rather than by tfjs' own factory, which asks `navigator.gpu` once with
 * default options: first Dawn's default backend (Vulkan on Linux: the NVIDIA driver on a real GPU),
 * then OpenGL ES in compatibility mode, which is the route that works through Mesa's llvmpipe on
 * Debian bookworm (Mesa 22.3's lavapipe lacks features Dawn's Vulkan backend requires).
 */
import * as tf from '@tensorflow/tfjs-core';

/** What the manifest records about the adapter (GPUAdapterInfo fields Dawn fills in). */
export interface AdapterRecord {
  adapter: string;
  vendor: string;
  architecture: string;
  /** 'opengles' when reached through the compatibility route, else Dawn's default ('vulkan' on Linux). */
  route: string;
  /** A CPU rasteriser (llvmpipe, lavapipe, SwiftShader) rather than a GPU. */
  software: string;
}

interface Route {
  name: string;
  dawnOptions: string[];
  featureLevel: 'core' | 'compatibility';
}

const ROUTES: Route[] = [
  { name: 'vulkan', dawnOptions: [], featureLevel: 'core' },
  { name: 'opengles', dawnOptions: ['backend=opengles'], featureLevel: 'compatibility' },
];

const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|swiftshader/i;

/**
 * Finds an adapter, makes a device with the adapter's limits (as tfjs' factory does) and registers
 * it as tfjs backend `webgpu`. `requireHardware` (auto) refuses a software adapter: wasm is faster
 * on the CPU than llvmpipe. Throws with what was tried when no adapter qualifies.
 */
export async function startWebgpu(requireHardware: boolean): Promise<AdapterRecord> {
  let dawn: typeof import('webgpu');
  try {
    dawn = await import('webgpu');
  } catch (error) {
    throw new Error(`engine.backend webgpu: the webgpu package failed to load (${(error as Error).message.split('\n')[0]})`);
  }
  // Mesa's EGL needs no display for the OpenGL ES route only when told so; read when Dawn starts EGL.
  process.env.EGL_PLATFORM ??= 'surfaceless';
  Object.assign(globalThis, dawn.globals);
  const tried: string[] = [];
  for (const route of ROUTES) {
    const gpu = dawn.create(route.dawnOptions);
    const adapter = await gpu.requestAdapter({ featureLevel: route.featureLevel, powerPreference: 'high-performance' }).catch(() => null);
    if (!adapter) {
      tried.push(`${route.name}: no adapter`);
      continue;
    }
    const info = adapter.info;
    const name = info.device || info.description || 'unknown';
    const software = info.isFallbackAdapter || SOFTWARE_ADAPTER.test(`${info.device} ${info.description}`);
    if (requireHardware && software) {
      tried.push(`${route.name}: ${name} is a software renderer`);
      continue;
    }
    await registerWebgpuBackend(gpu, adapter);
    return { adapter: name, vendor: info.vendor || 'unknown', architecture: info.architecture || 'unknown', route: route.name, software: String(software) };
  }
  throw new Error(
    `engine.backend webgpu: no ${requireHardware ? 'hardware ' : ''}adapter (${tried.join('; ')}). ` +
      'On a GPU machine Dawn needs the vendor Vulkan driver (in containers NVIDIA_DRIVER_CAPABILITIES must include graphics); ' +
      'without one, `apt-get install mesa-vulkan-drivers libegl-mesa0 libgles2` gives a software adapter.',
  );
}

async function registerWebgpuBackend(gpu: GPU, adapter: GPUAdapter): Promise<void> {
  // tfjs-backend-webgpu checks navigator.gpu when its backend is built. Node 20 has no navigator.
  Object.defineProperty(globalThis, 'navigator', { value: { ...(globalThis as { navigator?: object }).navigator, gpu }, configurable: true, writable: true });
  const { WebGPUBackend } = await import('@tensorflow/tfjs-backend-webgpu');
  const limits = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures: adapter.features.has('timestamp-query') ? ['timestamp-query'] : [],
    requiredLimits: {
      maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
      maxComputeWorkgroupsPerDimension: limits.maxComputeWorkgroupsPerDimension,
      maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
      maxBufferSize: limits.maxBufferSize,
      maxComputeWorkgroupSizeX: limits.maxComputeWorkgroupSizeX,
      maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
      // Dawn's default is 8; AddN binds one buffer per input.
      maxStorageBuffersPerShaderStage: limits.maxStorageBuffersPerShaderStage,
    },
  });
  // The package registered its own factory on import (navigator.gpu was set): ours uses this device.
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', () => new WebGPUBackend(device, adapter.info), 3);
  if (!(await tf.setBackend('webgpu'))) throw new Error("engine.backend webgpu: backend 'webgpu' failed to start");
  registerChunkedAddN(device.limits.maxStorageBuffersPerShaderStage - 1);
}

/**
 * tfjs-backend-webgpu's AddN binds every input as a storage buffer in one shader, so summing more
 * tensors than the device's per-stage limit (8 by default, 16 on llvmpipe) fails validation; a
 * global gradient norm over a model's parameters does that. This AddN sums `perPass` inputs per
 * pass with the package's own kernel, then sums the partial sums the same way.
 */
function registerChunkedAddN(perPass: number): void {
  const original = tf.getKernel('AddN', 'webgpu');
  if (!original || (original as { chunked?: boolean }).chunked) return;
  const sum = (inputs: tf.TensorInfo[], backend: tf.KernelBackend, attrs: tf.NamedAttrMap): tf.TensorInfo => {
    // AddN's inputs are an array (tfjs-core passes the tensor list as is), typed as a map.
    if (inputs.length <= perPass) return original.kernelFunc({ inputs: inputs as unknown as tf.NamedTensorInfoMap, backend, attrs }) as tf.TensorInfo;
    const partials: tf.TensorInfo[] = [];
    for (let i = 0; i < inputs.length; i += perPass) partials.push(sum(inputs.slice(i, i + perPass), backend, attrs));
    const total = sum(partials, backend, attrs);
    for (const p of partials) backend.disposeData(p.dataId);
    return total;
  };
  tf.unregisterKernel('AddN', 'webgpu');
  tf.registerKernel({
    kernelName: 'AddN',
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend, attrs }) => sum(Object.values(inputs) as tf.TensorInfo[], backend as tf.KernelBackend, attrs ?? {}),
  });
  Object.assign(tf.getKernel('AddN', 'webgpu') as object, { chunked: true });
}
