/**
 * A data-parallel rank (see data-parallel.ts): starts the backend, builds a replica of the model,
 * then per step message copies the current parameters in from the shared buffer, writes the
 * summed-loss gradients of its shards into its own shared buffer, and answers with their loss sum.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../runtime/backend.ts';
import type { FromWorker, ToWorker, WorkerInit } from './data-parallel.ts';
import { shardGradients, threadCpuMs, threadCpuMsSince } from './data-parallel.ts';
import { modelFromWeights, parameterShapes } from '../model/model.ts';
import { copyValuesInto, tensorFromValues } from '../runtime/wasm-kernels.ts';

const port = parentPort;
if (!port) throw new Error('data-parallel-worker.ts runs only as a worker thread');
const init = workerData as WorkerInit;
const send = (message: FromWorker) => port.postMessage(message);
const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

try {
  const engine = await initEngine(init.engine);
  // Zeros: every step overwrites them with the main thread's parameters.
  const model = modelFromWeights(init.config, new Map(parameterShapes(init.config).map(([name, shape]) => [name, tf.zeros(shape)])));
  const variables = init.names.map((name) => {
    const v = model.params.get(name);
    if (!v) throw new Error(`Internal error: the replica has no parameter ${name}`);
    return v;
  });
  const total = variables.reduce((n, v) => n + v.size, 0);
  const shared = new Float32Array(init.params);
  const grads = new Float32Array(init.grads);
  if (shared.length !== total || grads.length !== total) {
    throw new Error(`Internal error: ${shared.length} shared parameter values and ${grads.length} gradient slots for ${total} parameters`);
  }

  port.on('message', async (message: ToWorker) => {
    try {
      const started = performance.now();
      let offset = 0;
      for (const v of variables) {
        // A copy: the shared buffer is rewritten before the next step.
        tf.tidy(() => v.assign(tensorFromValues(shared.subarray(offset, offset + v.size), v.shape)));
        offset += v.size;
      }
      const loaded = performance.now();
      const cpuStart = threadCpuMs();
      const { sums, lossSum, weight } = await shardGradients(model, message.shards, variables);
      const computed = performance.now();
      const gradientsCpu = threadCpuMsSince(cpuStart);
      if (sums) {
        offset = 0;
        for (const s of sums) {
          copyValuesInto(s, grads, offset);
          offset += s.size;
        }
        tf.dispose(sums);
      }
      const times = { load: loaded - started, gradients: computed - loaded, gradientsCpu, store: performance.now() - computed };
      send({ type: 'result', id: message.id, hasGrads: sums !== undefined, lossSum, weight, times });
    } catch (error) {
      send({ type: 'error', id: message.id, message: messageOf(error) });
    }
  });
  send({ type: 'ready', engine });
} catch (error) {
  send({ type: 'error', id: null, message: messageOf(error) });
}
